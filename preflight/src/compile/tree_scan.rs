//! What a real Cilium bpf tree itself says about the headers the agent must write for it, so a
//! version preflight has never seen still gets agent-faithful state (docs/compile.md, *State
//! derived from the tree*):
//!
//! - which identifiers its sources reference (a macro nobody references is not written);
//! - which macros its load-time configuration headers (`include/bpf/config/*.h`, 1.18+) define
//!   from `CONFIG()` variables: the agent no longer writes those into the legacy headers, and a
//!   generated definition would collide with them;
//! - which macros the sources define themselves, unconditionally (never written either);
//! - the dummy headers at the top level (`node_config.h`, `ep_config.h`, `netdev_config.h`,
//!   `filter_config.h`): the values the tree's own test build uses;
//! - the `HAVE_*` feature macros the sources test.
//!
//! The scan also makes the working copy the stage compiles (the agent writes its feature
//! headers into `include/bpf/` of its bpf dir; a user's tree is never written to) and the
//! tree's digest for the object cache. Input is bounded: regular files only, per-file and
//! total size caps, a file count cap; anything else is an error naming the path.
use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    io::Read,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

/// The dummy headers a bpf dir ships at its top level, which the generated ones shadow.
pub const DUMMY_HEADERS: &[&str] = &[
    "node_config.h",
    "ep_config.h",
    "netdev_config.h",
    "filter_config.h",
];

/// Top-level directories the agent's compiles never read (unit tests, verifier complexity
/// tests, test programs, tooling, the custom-calls example): not copied, not scanned.
const SKIPPED_DIRS: &[&str] = &["tests", "complexity-tests", "test-progs", "tools", "custom"];

const MAX_FILE_BYTES: u64 = 8 << 20;
const MAX_TREE_BYTES: u64 = 128 << 20;
const MAX_FILES: usize = 20_000;
const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, Default)]
pub struct TreeScan {
    /// `bpf_*.c` at the top level, without the extension.
    pub programs: BTreeSet<String>,
    /// Every scanned file, relative to the tree (`lib/utils.h`).
    pub paths: BTreeSet<String>,
    /// The dummy headers present, by name.
    pub dummies: BTreeMap<String, String>,
    /// Identifiers (`[A-Za-z_][A-Za-z0-9_]*` of two or more characters) that appear in the
    /// sources outside the dummy headers.
    pub references: HashSet<String>,
    /// Macros `#define`d by `include/bpf/config/*.h` (the load-time configuration's
    /// backwards-compatibility names, e.g. `SECLABEL` → `CONFIG(security_label)`).
    pub config_macros: BTreeSet<String>,
    /// Load-time configuration variables declared anywhere (`DECLARE_CONFIG`, `NODE_CONFIG`).
    pub config_vars: BTreeSet<String>,
    /// Macros the sources (not the dummies) define outside any conditional.
    pub unconditional_defines: BTreeSet<String>,
    /// Every macro the sources (not the dummies) define, conditionally or not.
    pub defines: BTreeSet<String>,
    /// `HAVE_*` names the sources test.
    pub have_refs: BTreeSet<String>,
    /// sha256 over every scanned file's relative path and contents.
    pub digest: String,
    /// Files and bytes scanned.
    pub files: usize,
    pub bytes: u64,
}

impl TreeScan {
    pub fn references(&self, name: &str) -> bool {
        self.references.contains(name)
    }
    /// Whether the agent would write `name` into a legacy header for this tree: the sources
    /// use it, the load-time configuration does not define it, the sources do not define it.
    pub fn wants(&self, name: &str) -> bool {
        self.references(name)
            && !self.config_macros.contains(name)
            && !self.unconditional_defines.contains(name)
    }
    /// Whether the tree has the load-time configuration headers (1.18+).
    pub fn has_load_time_config(&self) -> bool {
        !self.config_vars.is_empty()
    }
}

fn too_big(path: &Path, what: &str) -> String {
    format!("{}: {what}", path.display())
}

/// Scans `src` and, when `copy_to` is given, copies the scanned files there (same layout).
pub fn scan(src: &Path, copy_to: Option<&Path>) -> Result<TreeScan, String> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut total = 0u64;
    collect(src, src, 0, &mut files, &mut total)?;
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = TreeScan::default();
    let mut hasher = Sha256::new();
    let mut sources: Vec<(bool, std::borrow::Cow<'_, str>)> = Vec::new();
    for (rel, bytes) in &files {
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
        if let Some(dest) = copy_to {
            let to = dest.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            // A hard link costs no new inode (creating files is most of a copy's time on
            // ext4); across filesystems, or where links are refused, a copy. Whoever writes
            // into the copy must replace a file, never write through it (`replace_file`).
            if std::fs::hard_link(src.join(rel), &to).is_err() {
                std::fs::write(&to, bytes).map_err(|e| format!("{}: {e}", to.display()))?;
            }
        }
        let text = String::from_utf8_lossy(bytes);
        let rel_str = rel.to_string_lossy();
        out.paths.insert(rel_str.to_string());
        let top_level = rel.components().count() == 1;
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if top_level && DUMMY_HEADERS.contains(&name.as_str()) {
            out.dummies.insert(name, text.into_owned());
            continue;
        }
        if top_level
            && let Some(program) = name.strip_suffix(".c").filter(|p| p.starts_with("bpf_"))
        {
            out.programs.insert(program.to_string());
        }
        if !(name.ends_with(".c") || name.ends_with(".h")) {
            continue;
        }
        sources.push((rel_str.starts_with("include/bpf/config/"), text));
    }
    // Parsing is the CPU part of the scan: the files in parallel, merged after.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let chunk = sources.len().div_ceil(workers).max(1);
    let parsed: Vec<Vec<(bool, ParsedSource)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(in_config, text)| (*in_config, parse_source(text)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for (in_config, p) in parsed.into_iter().flatten() {
        if in_config {
            out.config_macros.extend(p.defines.iter().cloned());
        }
        out.config_vars.extend(p.config_vars);
        out.unconditional_defines.extend(p.unconditional_defines);
        out.defines.extend(p.defines);
        out.have_refs.extend(
            p.identifiers
                .iter()
                .filter(|i| i.starts_with("HAVE_") && !i.ends_with("__"))
                .cloned(),
        );
        out.references.extend(p.identifiers);
    }
    out.digest = format!("{:x}", hasher.finalize());
    out.files = files.len();
    out.bytes = total;
    Ok(out)
}

fn collect(
    root: &Path,
    dir: &Path,
    depth: usize,
    files: &mut Vec<(PathBuf, Vec<u8>)>,
    total: &mut u64,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(too_big(dir, "directories nested too deep for a bpf tree"));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        // lstat: a symlink is neither followed nor copied (it could point anywhere).
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if meta.is_dir() {
            if depth == 0 && SKIPPED_DIRS.contains(&name.as_str()) {
                continue;
            }
            collect(root, &path, depth + 1, files, total)?;
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(too_big(&path, "larger than any bpf source (8 MiB cap)"));
        }
        if files.len() >= MAX_FILES {
            return Err(too_big(root, "more files than a bpf tree has (20000 cap)"));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(too_big(&path, "larger than any bpf source (8 MiB cap)"));
        }
        *total += bytes.len() as u64;
        if *total > MAX_TREE_BYTES {
            return Err(too_big(root, "larger than any bpf tree (128 MiB cap)"));
        }
        files.push((rel, bytes));
    }
    Ok(())
}

#[derive(Debug, Default)]
struct ParsedSource {
    identifiers: HashSet<String>,
    defines: BTreeSet<String>,
    unconditional_defines: BTreeSet<String>,
    config_vars: BTreeSet<String>,
}

/// C text without comments (string and char literals kept), newlines preserved so lines count.
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = '\0';
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' | '\'' => {
                out.push(c);
                let mut escaped = false;
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' || (!escaped && d == c) {
                        break;
                    }
                    escaped = !escaped && d == '\\';
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Writes `text` at `path` in a working copy as a new file: the old one may be a hard link to
/// the user's tree, which must never change.
pub fn replace_file(path: &Path, text: &str) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::write(path, text)
}

/// Logical lines: backslash-continued physical lines joined.
pub fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(body) = line.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
        } else {
            current.push_str(line);
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A preprocessor directive: (`define`, rest) for `#  define X 1`.
pub fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start().strip_prefix('#')?.trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    Some((&rest[..end], rest[end..].trim()))
}

/// The macro name of `#define NAME...` (rest after the directive).
pub fn define_name(rest: &str) -> Option<&str> {
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

fn identifiers(text: &str, into: &mut HashSet<String>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            if i - start >= 2 && !into.contains(&text[start..i]) {
                into.insert(text[start..i].to_string());
            }
        } else if c.is_ascii_digit() {
            // Skip numbers with suffixes (0x1fULL) so they do not count as identifiers.
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
}

/// The second argument of `DECLARE_CONFIG(type, name, ...)` / `NODE_CONFIG(...)` in a line.
fn config_var(line: &str) -> Option<String> {
    let t = line.trim_start();
    let args = t
        .strip_prefix("DECLARE_CONFIG(")
        .or_else(|| t.strip_prefix("NODE_CONFIG("))?;
    let name = args.split(',').nth(1)?.trim();
    define_name(name).map(str::to_string)
}

fn parse_source(text: &str) -> ParsedSource {
    let mut out = ParsedSource::default();
    let clean = strip_comments(text);
    let lines = logical_lines(&clean);
    // Conditional depth, not counting a classic include guard around the whole file.
    let mut depth = 0i32;
    let mut guard: Option<String> = None;
    // An include guard is the file's first directive: in a `#pragma once` file, or after
    // other lines, `#ifndef X` + `#define X` is a default (lib/lb.h: `#ifndef DSR_XLATE_MODE`
    // also defines `DSR_XLATE_FRONTEND`, which the agent writes when it writes the mode).
    let mut seen_content = false;
    for (i, line) in lines.iter().enumerate() {
        let first = !seen_content;
        seen_content |= !line.trim().is_empty();
        // Conditionals reference names too (`#ifdef ENABLE_NODEPORT`): every line counts, a
        // `#define` line for its body only (defining a name is not using it).
        match directive(line) {
            Some(("define", rest)) => {
                let name_len = define_name(rest).map(str::len).unwrap_or(0);
                identifiers(&rest[name_len..], &mut out.identifiers);
            }
            _ => identifiers(line, &mut out.identifiers),
        }
        match directive(line) {
            Some(("ifndef", rest)) if depth == 0 && guard.is_none() && first => {
                // `#ifndef G` immediately followed by `#define G` opens an include guard.
                let name = define_name(rest).unwrap_or_default();
                let next_defines_it = lines[i + 1..]
                    .iter()
                    .find(|l| !l.trim().is_empty())
                    .and_then(|l| match directive(l) {
                        Some(("define", r)) => define_name(r),
                        _ => None,
                    })
                    == Some(name);
                if next_defines_it && !name.is_empty() {
                    guard = Some(name.to_string());
                } else {
                    depth += 1;
                }
            }
            Some(("if" | "ifdef" | "ifndef", _)) => depth += 1,
            Some(("endif", _)) => {
                if depth == 0 {
                    guard = None;
                } else {
                    depth -= 1;
                }
            }
            Some(("define", rest)) => {
                if let Some(name) = define_name(rest) {
                    out.defines.insert(name.to_string());
                    if depth == 0 && guard.as_deref() != Some(name) {
                        out.unconditional_defines.insert(name.to_string());
                    }
                }
            }
            Some(_) => {}
            None => {
                if let Some(var) = config_var(line) {
                    out.config_vars.insert(var);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_scanned_copied_and_digested() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("bpf");
        std::fs::create_dir_all(t.join("include/bpf/config")).unwrap();
        std::fs::create_dir_all(t.join("lib")).unwrap();
        std::fs::create_dir_all(t.join("tests")).unwrap();
        std::fs::write(
            t.join("bpf_lxc.c"),
            "#include <node_config.h>\n/* SECRET_IN_COMMENT */\nint f() { return FOO + CONFIG(bar); }\n#ifdef HAVE_FIB_NEIGH\n#endif\n",
        )
        .unwrap();
        std::fs::write(
            t.join("node_config.h"),
            "#define FOO 1\n#define ONLY_IN_DUMMY 2\n",
        )
        .unwrap();
        std::fs::write(
            t.join("include/bpf/config/endpoint.h"),
            "#pragma once\nDECLARE_CONFIG(__u32, security_label, \"x\")\n#define SECLABEL CONFIG(security_label)\n",
        )
        .unwrap();
        std::fs::write(
            t.join("lib/nat.h"),
            "#ifndef __LIB_NAT_H_\n#define __LIB_NAT_H_\n#define RETRIES 32\n#ifdef X\n#define COND 1\n#endif\n#endif\n",
        )
        .unwrap();
        std::fs::write(
            t.join("lib/lb.h"),
            "#pragma once\n#ifndef DSR_XLATE_MODE\n# define DSR_XLATE_MODE 0\n# define DSR_XLATE_FRONTEND 1\n#endif\nint x = DSR_XLATE_FRONTEND;\n",
        )
        .unwrap();
        std::fs::write(t.join("tests/huge.c"), "int ignored_in_tests;\n").unwrap();
        let copy = dir.path().join("copy");
        let s = scan(&t, Some(&copy)).unwrap();
        assert_eq!(s.programs, BTreeSet::from(["bpf_lxc".to_string()]));
        assert!(s.dummies.contains_key("node_config.h"));
        assert!(s.references("FOO") && !s.references("ONLY_IN_DUMMY"));
        assert!(
            !s.references("SECRET_IN_COMMENT"),
            "comments are not references"
        );
        assert!(!s.references("ignored_in_tests"));
        assert!(s.config_macros.contains("SECLABEL"));
        assert!(s.config_vars.contains("security_label"));
        assert!(s.unconditional_defines.contains("RETRIES"));
        assert!(!s.unconditional_defines.contains("COND") && s.defines.contains("COND"));
        assert!(!s.unconditional_defines.contains("__LIB_NAT_H_"));
        // Not an include guard: a default after `#pragma once`, which the agent overrides.
        assert!(s.wants("DSR_XLATE_FRONTEND") && s.wants("DSR_XLATE_MODE"));
        assert!(s.have_refs.contains("HAVE_FIB_NEIGH"));
        assert!(s.wants("FOO") && !s.wants("SECLABEL") && !s.wants("RETRIES"));
        assert!(copy.join("lib/nat.h").is_file() && !copy.join("tests").exists());
        let again = scan(&copy, None).unwrap();
        assert_eq!(again.digest, s.digest, "the copy digests like the original");
        replace_file(&copy.join("lib/nat.h"), "changed\n").unwrap();
        assert_ne!(scan(&copy, None).unwrap().digest, s.digest);
        // The user's tree is untouched (the copy's files may be hard links to it).
        assert_eq!(scan(&t, None).unwrap().digest, s.digest);
    }

    #[test]
    fn bounded_input_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("bpf_big.c");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        let err = scan(dir.path(), None).unwrap_err();
        assert!(err.contains("bpf_big.c"), "{err}");
        // A FIFO is skipped, not read (it would block forever).
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("bpf_fifo.c"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        let s = scan(dir.path(), None).unwrap();
        assert!(s.programs.is_empty());
    }

    proptest::proptest! {
        /// Any source text: the parse never panics, and comments never hide a line count.
        #[test]
        fn parsing_any_text_never_panics(text in "(#ifndef G\n|#define G\n|#if \n|#endif\n|/\\*|\\*/|//|\"|'|\\\\\n|DECLARE_CONFIG\\(|[ -~\n\u{e9}\u{1F600}])*") {
            let p = parse_source(&text);
            let _ = (p.identifiers.len(), p.defines.len());
            proptest::prop_assert_eq!(strip_comments(&text).matches('\n').count(), text.matches('\n').count());
            let _ = crate::compile::version_guess::judge(&text);
        }
    }

    #[test]
    fn comments_and_continuations() {
        let t = strip_comments("a /* b\n c */ d // e\n\"/* not */\" f");
        assert_eq!(t, "a \n  d \n\"/* not */\" f");
        assert_eq!(
            logical_lines("#define X \\\n  1\nY\n"),
            ["#define X    1", "Y"]
        );
        assert_eq!(directive("  # define  X 1"), Some(("define", "X 1")));
        assert_eq!(define_name("IS_L3_DEV(ifindex) false"), Some("IS_L3_DEV"));
    }
}
