//! The rooms of `preflight/src` and the order they may use each other in (README "Layout"): a
//! room uses the rooms below it, never one above it, and no two rooms import each other. This test reads every source file, finds each `crate::…`
//! reference (`use crate::{a, b::c}` groups included, and `preflight::…` in main.rs), and fails
//! on an import upward or a cycle, naming the file and line.
//!
//! A new top-level module must be placed in [`LAYERS`]; the test says so.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Top to bottom. Rooms on one line may use each other as long as that makes no cycle.
const LAYERS: &[&[&str]] = &[
    // fn main: parse, dispatch, map errors to exit codes.
    &["main"],
    // Every clap Args struct and handler; stdout.
    &["cmd"],
    // The whole-cluster migration: plans from many reports (fleet), drives node plans (plan).
    &["cluster"],
    // The migration (plan, journal, executor), the fleet (Job manifests, aggregation) and the
    // kernel-upgrade gate (kernels booted under qemu).
    &["plan", "fleet", "gate"],
    // Outcomes to go / no-go; the report document and its renderers.
    &["verdict", "report"],
    // The check registry: pure functions over facts and the target.
    &["checks"],
    // Gathering: the only part that touches the node (through host, probe, compile).
    &["facts"],
    // The datapath compile stage (clang, headers, verifier).
    &["compile"],
    // Live bpf() probes and canaries.
    &["probe"],
    // What each Cilium version is, Helm values and their validation.
    &["cilium"],
    // The one door to the node's files.
    &["host"],
    // Plain types every room shares; facts about the running executable.
    &["model", "exe"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn layer_of(room: &str) -> Option<usize> {
    LAYERS.iter().position(|rooms| rooms.contains(&room))
}

/// One `crate::<room>` reference in a source file.
#[derive(Debug, Clone, PartialEq)]
struct Reference {
    /// The first path segment after `crate::` (a module, or an exported macro).
    name: String,
    line: usize,
}

/// `source` with comments, string and char literals blanked out (newlines kept, so line numbers
/// stay right): a `crate::x` in a doc comment or a message is not an import.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    // Everything from `from` to `to` (exclusive) becomes blanks, newlines kept.
    let blank = |out: &mut String, from: usize, to: usize| {
        for c in &chars[from..to.min(chars.len())] {
            out.push(if *c == '\n' { '\n' } else { ' ' });
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            let end = (i..chars.len())
                .find(|&j| chars[j] == '\n')
                .unwrap_or(chars.len());
            blank(&mut out, i, end);
            i = end;
        } else if c == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let (mut depth, mut j) = (0usize, i);
            while j < chars.len() {
                if chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if (c == 'r' || (c == 'b' && next == Some('r'))) && !prev_ident && {
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[start.min(chars.len())..]
                .iter()
                .take_while(|&&h| h == '#')
                .count();
            chars.get(start + hashes) == Some(&'"')
        } {
            // Raw string: r"…", r#"…"#, br"…".
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[start..].iter().take_while(|&&h| h == '#').count();
            let mut j = start + hashes + 1;
            while j < chars.len() {
                if chars[j] == '"'
                    && chars[j + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == '#')
                        .count()
                        == hashes
                {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            blank(&mut out, i, j);
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}'), or a lifetime ('a), which stays.
            if next == Some('\\') {
                let end = (i + 2..chars.len())
                    .find(|&j| chars[j] == '\'')
                    .unwrap_or(chars.len());
                blank(&mut out, i, end + 1);
                i = end + 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                blank(&mut out, i, i + 3);
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Every `crate::name` (and `krate::name`) in `code`, with the names a `crate::{…}` group imports.
fn references(code: &str, krate: &str) -> Vec<Reference> {
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut out = Vec::new();
    let prefix = format!("{krate}::");
    let mut from = 0;
    while let Some(found) = code[from..].find(&prefix) {
        let at = from + found;
        from = at + prefix.len();
        // `$crate::` counts (macro bodies); `my_crate::` does not.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|b| b.is_alphanumeric() || b == '_') {
            continue;
        }
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: split on commas at brace depth 0.
            let mut depth = 0usize;
            let mut start = 0;
            let offset = from + 1;
            for (k, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        push_name(&mut out, &group[start..k], offset + start, &line_of);
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        push_name(&mut out, &group[start..k], offset + start, &line_of);
                        start = k + 1;
                    }
                    _ => {}
                }
            }
        } else {
            push_name(&mut out, rest, from, &line_of);
        }
    }
    out
}

/// The first identifier of `item` (`report::{self, Report}` → `report`), at its own line.
fn push_name(out: &mut Vec<Reference>, item: &str, at: usize, line_of: &impl Fn(usize) -> usize) {
    let skip = item.len() - item.trim_start().len();
    let name: String = item[skip..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if !name.is_empty() && name != "self" {
        out.push(Reference {
            name,
            line: line_of(at + skip),
        });
    }
}

/// Macros exported at the crate root (`crate::outln!`), by the room that defines them.
fn exported_macros(files: &[(String, PathBuf, String)]) -> BTreeMap<String, String> {
    let mut macros = BTreeMap::new();
    for (room, _, code) in files {
        let mut rest = code.as_str();
        while let Some(at) = rest.find("#[macro_export]") {
            rest = &rest[at..];
            if let Some(m) = rest.find("macro_rules!") {
                let name: String = rest[m + "macro_rules!".len()..]
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                macros.insert(name, room.clone());
            }
            rest = &rest["#[macro_export]".len()..];
        }
    }
    macros
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("src dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// (room, file, code) for every source file but the crate root (lib.rs: module list and the
/// re-exports kept while other branches move over).
fn sources() -> Vec<(String, PathBuf, String)> {
    let src = src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|f| f != &src.join("lib.rs"))
        .map(|f| {
            let rel = f.strip_prefix(&src).expect("under src");
            let first = rel.components().next().expect("a component");
            let room = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            let text = std::fs::read_to_string(&f).expect("read source");
            (room, f, code_only(&text))
        })
        .collect()
}

#[test]
fn every_room_uses_only_the_rooms_below_it_and_no_two_rooms_import_each_other() {
    let files = sources();
    let macros = exported_macros(&files);
    let rooms: BTreeSet<&str> = files.iter().map(|(r, _, _)| r.as_str()).collect();
    let mut problems = Vec::new();
    for room in &rooms {
        if layer_of(room).is_none() {
            problems.push(format!(
                "src/{room}: a room that is not in tests/layers.rs LAYERS: place it there (and \
                 in the README's layout)"
            ));
        }
    }
    for room in LAYERS.iter().flat_map(|rooms| rooms.iter()) {
        if !rooms.contains(room) {
            problems.push(format!(
                "LAYERS names {room}, which is not a module under src/"
            ));
        }
    }
    // room -> room -> first place it is used.
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (room, file, code) in &files {
        let krate = if room == "main" { "preflight" } else { "crate" };
        for r in references(code, krate) {
            let target = match macros.get(&r.name) {
                Some(defined_in) => defined_in.clone(),
                None if rooms.contains(r.name.as_str()) => r.name.clone(),
                None => continue, // an item of the crate root (`crate::exit`)
            };
            if &target == room {
                continue;
            }
            let place = format!(
                "{}:{}",
                file.strip_prefix(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .parent()
                        .expect("repo")
                )
                .unwrap_or(file)
                .display(),
                r.line
            );
            if let (Some(from), Some(to)) = (layer_of(room), layer_of(&target))
                && to < from
            {
                problems.push(format!(
                    "{place}: {room} uses {target}, a room above it (`{krate}::{}`)",
                    r.name
                ));
            }
            edges
                .entry(room.clone())
                .or_default()
                .entry(target)
                .or_insert(place);
        }
    }
    // Every cycle holds an upward import, listed above; the shortest cycles show the knot.
    let mut found = cycles(&edges);
    found.sort_by_key(Vec::len);
    let more = found.len().saturating_sub(5);
    for cycle in found.into_iter().take(5) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| format!("{} -> {} ({})", w[0], w[1], edges[&w[0]][&w[1]]))
            .collect();
        problems.push(format!("import cycle: {}", steps.join(", ")));
    }
    if more > 0 {
        problems.push(format!("… and {more} longer import cycles"));
    }
    assert!(
        problems.is_empty(),
        "the rooms' order is broken (tests/layers.rs):\n{}",
        problems.join("\n")
    );
}

/// Every elementary cycle found by a depth-first walk, each once, as a closed path (a, b, a).
fn cycles(edges: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    fn walk(
        node: &str,
        edges: &BTreeMap<String, BTreeMap<String, String>>,
        path: &mut Vec<String>,
        found: &mut BTreeSet<Vec<String>>,
    ) {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle: Vec<String> = path[at..].to_vec();
            // One rotation per cycle: start at its smallest room.
            let min = (0..cycle.len())
                .min_by_key(|&i| &cycle[i])
                .expect("non-empty");
            cycle.rotate_left(min);
            let first = cycle[0].clone();
            cycle.push(first);
            found.insert(cycle);
            return;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flat_map(|m| m.keys()) {
            walk(next, edges, path, found);
        }
        path.pop();
    }
    let mut found = BTreeSet::new();
    for start in edges.keys() {
        walk(start, edges, &mut Vec::new(), &mut found);
    }
    found.into_iter().collect()
}

#[test]
fn references_are_found_in_use_groups_and_paths_but_not_in_comments_or_strings() {
    let code = code_only(
        "use crate::{\n    cilium::{Target, node},\n    model::Status,\n};\n\
         // crate::plan in a comment\n/* crate::fleet /* nested */ crate::cmd */\n\
         let s = \"crate::report\"; let r = r#\"crate::probe\"#; let c = '\"';\n\
         fn f<'a>(x: &'a str) { crate::host::read(x); $crate::cmd::out::write_str(x) }\n",
    );
    let names: Vec<(String, usize)> = references(&code, "crate")
        .into_iter()
        .map(|r| (r.name, r.line))
        .collect();
    assert_eq!(
        names,
        [
            ("cilium".to_string(), 2),
            ("model".to_string(), 3),
            ("host".to_string(), 8),
            ("cmd".to_string(), 8),
        ]
    );
}

#[test]
fn a_cycle_is_reported_once_from_its_smallest_room() {
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (a, b) in [
        ("report", "checks"),
        ("checks", "verdict"),
        ("verdict", "report"),
    ] {
        edges
            .entry(a.into())
            .or_default()
            .insert(b.into(), "x".into());
    }
    assert_eq!(
        cycles(&edges),
        [["checks", "verdict", "report", "checks"]
            .map(String::from)
            .to_vec()]
    );
}

/// The README's "Layout" section lists the rooms of `preflight/src`, one line each, top to
/// bottom in the order of [`LAYERS`] (a room's sub-files may follow it on lines of their own).
#[test]
fn the_readme_layout_lists_every_room_in_layer_order() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md");
    let section = readme
        .split("\n## Layout\n")
        .nth(1)
        .expect("README.md has a \"## Layout\" section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the Layout section has a code block");
    // `  src/cmd/  …` or `  src/verdict.rs  …`: a room; `  src/host/input.rs  …` is a sub-file.
    let listed: Vec<&str> = block
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("src/"))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|path| {
            let room = path
                .strip_suffix('/')
                .or_else(|| path.strip_suffix(".rs"))?;
            (!room.contains('/')).then_some(room)
        })
        .collect();
    let expected: Vec<&str> = LAYERS
        .iter()
        .flat_map(|rooms| rooms.iter().copied())
        .collect();
    assert_eq!(
        listed, expected,
        "README.md's Layout must list the rooms of tests/layers.rs, top to bottom"
    );
}
