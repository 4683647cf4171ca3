//! Files the operator names on the command line (values `-f`, `--chart` and what is in it,
//! `diff` reports, `aggregate` inputs, `job --values`) and stdin (`-`): bounded work on any
//! of them. A path is opened `O_PATH` and its type checked before it is opened for reading, so
//! a FIFO does not block and a device is never read; a regular file is read with a cap, so
//! `/dev/zero` or a 100 MB file cannot grow memory; stdin is read with the same cap. Text that
//! is parsed as YAML is first checked for nesting depth ([`yaml_depth`]): the YAML parser is
//! quadratic in flow nesting (`[[[[…`) and builds every event before the depth limit of the
//! deserializer applies.
//!
//! Every refusal names the file, the limit, and how to raise it: exit 2 (bad input).
use std::{
    io::Read,
    path::{Path, PathBuf},
};

use rustix::fs::{FileType, Mode, OFlags};

use crate::host::confined;

/// Largest input file read whole (values files, chart files, reports). Cilium's own
/// values.yaml is ~150 KiB; a report ~30 KiB.
pub const DEFAULT_MAX_BYTES: u64 = 16 << 20;
/// The environment variable that raises [`DEFAULT_MAX_BYTES`].
pub const MAX_BYTES_ENV: &str = "PREFLIGHT_MAX_INPUT_BYTES";
/// Deepest YAML nesting accepted (Cilium's values nest 7 levels; the YAML deserializer stops
/// at 128).
pub const MAX_YAML_DEPTH: usize = 100;
/// Most mapping keys in one YAML file (Cilium's values.yaml has ~1,400): parsing and judging
/// cost grows with them (the typo check alone is ~40 µs a key).
pub const MAX_YAML_KEYS: usize = 10_000;

/// An input that was refused or could not be read. Always names the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("{file}: not found")]
    NotFound { file: String },
    #[error("{file}: {what}, not a regular file; not read")]
    NotRegular { file: String, what: &'static str },
    #[error(
        "{file}: larger than {limit} bytes, the limit for {kind}; not read (raise it with \
         {MAX_BYTES_ENV}=BYTES)"
    )]
    TooLarge {
        file: String,
        limit: u64,
        kind: &'static str,
    },
    #[error(
        "{file}:{line}: YAML nested more than {MAX_YAML_DEPTH} levels deep; not parsed (a \
         values file nests a handful)"
    )]
    TooDeep { file: String, line: usize },
    #[error(
        "{file}:{line}: more than {MAX_YAML_KEYS} keys; not parsed (Cilium's values have ~1,400)"
    )]
    TooManyKeys { file: String, line: usize },
    #[error("{file}:{line}: not UTF-8 text")]
    NotText { file: String, line: usize },
    #[error("{file}: {message}")]
    Io { file: String, message: String },
}

/// The cap for whole-file inputs: [`DEFAULT_MAX_BYTES`], or `PREFLIGHT_MAX_INPUT_BYTES`.
pub fn max_bytes() -> u64 {
    std::env::var(MAX_BYTES_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_BYTES)
}

/// What a path is not, for messages.
fn what(t: FileType) -> &'static str {
    match t {
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Directory => "a directory",
        _ => "a special file",
    }
}

/// Opens `path` (links followed: the operator named it) for reading if it is a regular file;
/// anything else is refused without being opened for I/O.
pub fn open_regular(path: &Path) -> Result<std::fs::File, InputError> {
    let file = path.display().to_string();
    let io = |e: std::io::Error| InputError::Io {
        file: file.clone(),
        message: match e.raw_os_error() {
            Some(libc::ELOOP) => "symlink loop".to_string(),
            _ => e.to_string(),
        },
    };
    let fd = match rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Err(InputError::NotFound { file }),
        Err(e) => return Err(io(std::io::Error::from_raw_os_error(e.raw_os_error()))),
    };
    let kind = confined::kind(&fd).map_err(io)?;
    if kind != FileType::RegularFile {
        return Err(InputError::NotRegular {
            file: file.clone(),
            what: what(kind),
        });
    }
    Ok(std::fs::File::from(
        confined::reopen(&fd, OFlags::RDONLY).map_err(io)?,
    ))
}

/// The bytes of `path` (`-` is stdin), at most `max`: more is an error, not a truncation.
/// `kind` says what the file is for, in the message ("values files").
pub fn read(path: &Path, kind: &'static str, max: u64) -> Result<Vec<u8>, InputError> {
    let file = shown(path);
    let source: Box<dyn Read> = if is_stdin(path) {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(open_regular(path)?)
    };
    let mut bytes = Vec::new();
    source
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| InputError::Io {
            file: file.clone(),
            message: e.to_string(),
        })?;
    if bytes.len() as u64 > max {
        return Err(InputError::TooLarge {
            file,
            limit: max,
            kind,
        });
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text (an error names the line of the first bad byte).
pub fn read_text(path: &Path, kind: &'static str) -> Result<String, InputError> {
    text(shown(path), read(path, kind, max_bytes())?)
}

/// Bytes as UTF-8, or an error naming the line of the first invalid byte.
pub fn text(file: String, bytes: Vec<u8>) -> Result<String, InputError> {
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..good].iter().filter(|&&b| b == b'\n').count() + 1;
        InputError::NotText { file, line }
    })
}

pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// How to name an input in messages.
pub fn shown(path: &Path) -> String {
    if is_stdin(path) {
        "<stdin>".into()
    } else {
        path.display().to_string()
    }
}

/// Refuses YAML nested deeper than [`MAX_YAML_DEPTH`] or with more than [`MAX_YAML_KEYS`]
/// keys, naming the line where the limit is passed.
/// A linear scan that over-counts rather than under-counts: flow collections (`[`, `{` where
/// a value starts, outside quotes and comments), block nesting by indentation, and compact
/// sequences (`- - - x`). Lines inside a block scalar (`key: |`) are text.
pub fn yaml_depth(file: &str, text: &str) -> Result<(), InputError> {
    let too_deep = |line: usize| InputError::TooDeep {
        file: file.to_string(),
        line,
    };
    // Indentation of the enclosing block collections.
    let mut blocks: Vec<usize> = Vec::new();
    // Open flow collections (they may span lines).
    let mut flow = 0usize;
    let mut scalar_at: Option<usize> = None;
    let mut keys = 0usize;
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let body = raw.trim_start_matches([' ', '\t']);
        let indent = raw.len() - body.len();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if let Some(at) = scalar_at {
            if indent > at {
                continue;
            }
            scalar_at = None;
        }
        if flow == 0 {
            while blocks.last().is_some_and(|&b| b >= indent) {
                blocks.pop();
            }
            blocks.push(indent);
        }
        let mut depth = blocks.len() + flow;
        let bytes = body.as_bytes();
        let mut quote: Option<u8> = None;
        // Whether the next character starts a value (where `[`/`{` open a collection).
        let mut at_value = true;
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            match quote {
                Some(q) => {
                    if c == q {
                        // '' inside single quotes is an escaped quote.
                        if q == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                            i += 1;
                        } else {
                            quote = None;
                        }
                    } else if c == b'\\' && q == b'"' {
                        i += 1;
                    }
                }
                None => match c {
                    b'"' | b'\'' if at_value => quote = Some(c),
                    b'#' if i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t' => break,
                    b'[' | b'{' if at_value => {
                        flow += 1;
                        depth += 1;
                    }
                    b']' | b'}' if flow > 0 => {
                        flow -= 1;
                        at_value = false;
                    }
                    b'-' if at_value
                        && flow == 0
                        && matches!(bytes.get(i + 1), None | Some(b' ' | b'\t')) =>
                    {
                        depth += 1;
                    }
                    b'|' | b'>' if at_value && flow == 0 => {
                        scalar_at = Some(indent);
                        break;
                    }
                    b' ' | b'\t' | b',' => {}
                    b':' if matches!(bytes.get(i + 1), None | Some(b' ' | b'\t')) => {
                        at_value = true;
                        depth += 1;
                        keys += 1;
                        if keys > MAX_YAML_KEYS {
                            return Err(InputError::TooManyKeys {
                                file: file.to_string(),
                                line,
                            });
                        }
                        i += 1;
                        continue;
                    }
                    _ => at_value = false,
                },
            }
            if matches!(c, b',' | b'[' | b'{') && quote.is_none() {
                at_value = true;
            }
            if depth > MAX_YAML_DEPTH {
                return Err(too_deep(line));
            }
            i += 1;
        }
        if depth > MAX_YAML_DEPTH {
            return Err(too_deep(line));
        }
    }
    Ok(())
}

/// A path the operator gave, made absolute for tools that run elsewhere (helm).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_devices_and_directories_are_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read(&fifo, "values files", 100).unwrap_err();
        assert!(
            matches!(err, InputError::NotRegular { what: "a FIFO", .. }),
            "{err}"
        );
        let err = read(Path::new("/dev/zero"), "values files", 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/dev/zero: a character device, not a regular file; not read"
        );
        let err = read(d.path(), "values files", 100).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
        let big = d.path().join("big");
        std::fs::write(&big, vec![b'a'; 101]).unwrap();
        let err = read(&big, "values files", 100).unwrap_err();
        assert!(
            err.to_string()
                .contains("larger than 100 bytes, the limit for values files")
                && err.to_string().contains(MAX_BYTES_ENV),
            "{err}"
        );
        std::os::unix::fs::symlink("loop", d.path().join("loop")).unwrap();
        let err = read(&d.path().join("loop"), "values files", 100).unwrap_err();
        assert!(err.to_string().contains("symlink loop"), "{err}");
    }

    #[test]
    fn yaml_depth_counts_flow_block_and_compact_nesting_but_not_text() {
        let ok = "a:\n  b:\n    c: [1, {d: [2]}]\n  e: \"[[[[[[\"\nf: |\n  [[[[[[[[[[\n";
        yaml_depth("ok.yaml", ok).unwrap();
        let flow = format!("a: {}\n", "[".repeat(200_000));
        let err = yaml_depth("f.yaml", &flow).unwrap_err();
        assert_eq!(
            err,
            InputError::TooDeep {
                file: "f.yaml".into(),
                line: 1
            }
        );
        let dashes = format!("x:\n{}y\n", "- ".repeat(500));
        assert!(matches!(
            yaml_depth("d.yaml", &dashes),
            Err(InputError::TooDeep { line: 2, .. })
        ));
        let keys: String = (0..MAX_YAML_KEYS + 1)
            .map(|i| format!("k{i}: 1\n"))
            .collect();
        assert!(matches!(
            yaml_depth("k.yaml", &keys),
            Err(InputError::TooManyKeys { line, .. }) if line == MAX_YAML_KEYS + 1
        ));
        let mut block = String::new();
        for i in 0..150 {
            block.push_str(&" ".repeat(i));
            block.push_str("k:\n");
        }
        assert!(yaml_depth("b.yaml", &block).is_err());
        // Cilium's own values (7 levels) pass.
        let cilium = include_str!("../../../fixtures/values/homelab.yaml");
        yaml_depth("cilium.yaml", cilium).unwrap();
    }
}
