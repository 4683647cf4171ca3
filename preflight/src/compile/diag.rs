//! clang's text diagnostics (with -fno-color-diagnostics -fno-caret-diagnostics) as structured
//! values. The format is stable across clang 10-22 (docs/compile.md#clangs-diagnostics):
//!
//! ```text
//! In file included from bpf_lxc.c:4:
//! ./node_config.h:21:9: error: 'CALLS_MAP' macro redefined [-Werror,-Wmacro-redefined]
//! /state/templates/ab../ep_config.h:5:9: note: previous definition is here
//! error: unknown target CPU 'v9'
//! ```
//! Notes attach to the diagnostic before them; "In file included from" lines to the next one.
//! Anything else (snippets, "N errors generated.") is skipped. Never panics on any input.
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Note,
    Remark,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    pub file: String,
    pub line: u32,
    pub col: u32,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    pub message: String,
    /// The warning flag that raised it, e.g. `-Wmacro-redefined` (from `[-Werror,-W...]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// Outermost first: the files that included the one the diagnostic is in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub included_from: Vec<Location>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Diagnostic>,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        matches!(self.severity, Severity::Error | Severity::Fatal)
    }
    /// The first 'quoted' name in the message: the macro, identifier, type or CPU it is about.
    pub fn subject(&self) -> Option<&str> {
        let start = self.message.find('\'')? + 1;
        let len = self.message[start..].find('\'')?;
        Some(&self.message[start..start + len])
    }
}

const SEVERITIES: &[(&str, Severity)] = &[
    (": fatal error: ", Severity::Fatal),
    (": error: ", Severity::Error),
    (": warning: ", Severity::Warning),
    (": note: ", Severity::Note),
    (": remark: ", Severity::Remark),
];

/// `file:line:col` (the file may itself contain colons, e.g. `<command line>`).
fn parse_location(text: &str) -> Option<Location> {
    let mut parts = text.rsplitn(3, ':');
    let col = parts.next()?.parse().ok()?;
    let line = parts.next()?.parse().ok()?;
    let file = parts.next()?.to_string();
    (!file.is_empty()).then_some(Location { file, line, col })
}

/// `file:line:` of an include line (no column).
fn parse_include(text: &str) -> Option<Location> {
    let text = text.strip_suffix(':').unwrap_or(text);
    let (file, line) = text.rsplit_once(':')?;
    Some(Location {
        file: file.to_string(),
        line: line.parse().ok()?,
        col: 0,
    })
}

/// Splits `message [-Werror,-Wfoo]` into the message and the -W flag.
fn split_flag(message: &str) -> (String, Option<String>) {
    if let Some(open) = message.rfind(" [")
        && message.ends_with(']')
    {
        let inside = &message[open + 2..message.len() - 1];
        if inside.starts_with('-') {
            let flag = inside
                .split(',')
                .rfind(|f| f.starts_with("-W") && *f != "-Werror")
                .map(str::to_string);
            return (message[..open].to_string(), flag);
        }
    }
    (message.to_string(), None)
}

fn parse_line(line: &str) -> Option<(Option<Location>, Severity, String)> {
    for prefix in ["fatal error: ", "error: ", "warning: ", "note: "] {
        if let Some(msg) = line.strip_prefix(prefix) {
            let sev = match prefix {
                "fatal error: " => Severity::Fatal,
                "error: " => Severity::Error,
                "warning: " => Severity::Warning,
                _ => Severity::Note,
            };
            return Some((None, sev, msg.to_string()));
        }
    }
    let (at, sep, sev) = SEVERITIES
        .iter()
        .filter_map(|(sep, sev)| line.find(sep).map(|at| (at, *sep, *sev)))
        .min_by_key(|(at, ..)| *at)?;
    // "clang: error: ..." has a tool name, not a location.
    let location = parse_location(&line[..at]);
    Some((location, sev, line[at + sep.len()..].to_string()))
}

pub fn parse(text: &str) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    let mut includes: Vec<Location> = Vec::new();
    for raw in text.lines() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed
            .strip_prefix("In file included from ")
            .or_else(|| trimmed.strip_prefix("from "))
        {
            if let Some(loc) = parse_include(rest) {
                includes.push(loc);
            }
            continue;
        }
        let Some((location, severity, message)) = parse_line(line) else {
            continue;
        };
        let (message, flag) = split_flag(&message);
        let d = Diagnostic {
            severity,
            location,
            message,
            flag,
            included_from: std::mem::take(&mut includes),
            notes: Vec::new(),
        };
        match (severity, out.last_mut()) {
            (Severity::Note, Some(parent)) => parent.notes.push(d),
            _ => out.push(d),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDEFINED: &str = "\
In file included from bpf_lxc.c:4:
./node_config.h:22:9: error: 'CALLS_MAP' macro redefined [-Werror,-Wmacro-redefined]
/run/state/templates/abc/ep_config.h:5:9: note: previous definition is here
In file included from bpf_lxc.c:4:
./node_config.h:23:9: error: 'ENABLE_ARP_RESPONDER' macro redefined [-Werror,-Wmacro-redefined]
/run/state/templates/abc/ep_config.h:6:9: note: previous definition is here
2 errors generated.
";

    #[test]
    fn macro_redefinitions_with_notes_and_include_stack() {
        let d = parse(REDEFINED);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].severity, Severity::Error);
        assert_eq!(d[0].subject(), Some("CALLS_MAP"));
        assert_eq!(d[0].message, "'CALLS_MAP' macro redefined");
        assert_eq!(d[0].flag.as_deref(), Some("-Wmacro-redefined"));
        let loc = d[0].location.as_ref().unwrap();
        assert_eq!(
            (loc.file.as_str(), loc.line, loc.col),
            ("./node_config.h", 22, 9)
        );
        assert_eq!(d[0].included_from[0].file, "bpf_lxc.c");
        assert_eq!(d[0].notes.len(), 1);
        assert_eq!(
            d[0].notes[0].location.as_ref().unwrap().file,
            "/run/state/templates/abc/ep_config.h"
        );
        assert_eq!(d[1].subject(), Some("ENABLE_ARP_RESPONDER"));
    }

    #[test]
    fn command_line_locations_tool_errors_and_nested_includes() {
        let text = "\
In file included from bpf_overlay.c:3:
                 from ./lib/x.h:2:
./node_config.h:22:9: error: 'CALLS_MAP' macro redefined [-Werror,-Wmacro-redefined]
<command line>:1:9: note: previous definition is here
error: unknown target CPU 'v9'
note: valid target CPU values are: generic, v1, v2, v3, v4, probe
clang: error: no such file or directory: 'nope.c'
x.c:3:25: warning: implicit conversion loses integer precision: 'unsigned long long' to '__u32' (aka 'unsigned int') [-Wshorten-64-to-32]
";
        let d = parse(text);
        assert_eq!(d.len(), 4);
        assert_eq!(d[0].included_from.len(), 2);
        assert_eq!(
            d[0].notes[0].location.as_ref().unwrap().file,
            "<command line>"
        );
        assert!(d[1].location.is_none());
        assert_eq!(d[1].subject(), Some("v9"));
        assert_eq!(d[1].notes.len(), 1);
        assert!(d[2].location.is_none() && d[2].is_error());
        assert_eq!(d[2].message, "no such file or directory: 'nope.c'");
        assert_eq!(d[3].severity, Severity::Warning);
        assert_eq!(d[3].flag.as_deref(), Some("-Wshorten-64-to-32"));
    }

    #[test]
    fn junk_and_truncated_lines_parse_to_nothing_without_panicking() {
        for text in [
            "",
            ":",
            "::: error: ",
            "a:b:c: error: x",
            "In file included from",
            "from :",
            "x [",
            "file:1:2: note: orphan note",
            "'unterminated",
            "é:1:1: error: 'é",
        ] {
            let _ = parse(text);
        }
        assert_eq!(parse("1 error generated.\n").len(), 0);
        assert_eq!(parse("file:1:2: note: orphan").len(), 1);
    }
}
