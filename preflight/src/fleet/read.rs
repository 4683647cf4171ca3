//! Reading node reports from files, directories, stdin or `kubectl logs` output, one report at a
//! time: memory is bounded by the largest single report (capped), never by the input size.
//!
//! Accepted shapes, in any mix within one input:
//! - a pretty-printed report (`preflight run --format json`): a line that is just `{`, up to a
//!   line that is just `}`;
//! - one report per line (`--format json-line`, what `preflight job`'s pods print), possibly
//!   after a prefix (`kubectl logs --prefix` / `--timestamps`); the prefix is also stripped from
//!   the following lines of a pretty report;
//! - anything else is log noise and is counted, not parsed. A line that carries
//!   `"schema_version"` but does not parse is refused with its file and line.
use std::{
    fs,
    io::{self, BufRead, BufReader, Read},
    path::{Path, PathBuf},
};

use serde::Deserialize;

/// The largest report accepted (a real one is ~30 KiB); protects memory from a runaway line.
pub const MAX_REPORT_BYTES: usize = 16 << 20;
/// The most bytes read from one input (a file or stdin), so an endless one (`/dev/zero` on
/// stdin) ends: ~8,000 reports of 30 KiB (`kubectl logs` of a fleet that size). Raised with
/// `PREFLIGHT_MAX_STREAM_BYTES`.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 256 << 20;
pub const MAX_INPUT_ENV: &str = "PREFLIGHT_MAX_STREAM_BYTES";

fn max_input_bytes() -> u64 {
    std::env::var(MAX_INPUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_INPUT_BYTES)
}

/// The part of a report the cluster verdict needs; everything else (checks, timings) is skipped
/// by the parser without being stored.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeReport {
    pub schema_version: u32,
    #[serde(default)]
    pub tool_version: String,
    pub node: NodeInfo,
    pub target: TargetInfo,
    pub verdict: VerdictInfo,
    /// The node's network and k3s role (`plan --cluster`); absent in reports of older builds.
    #[serde(default)]
    pub cluster_facts: Option<crate::model::ClusterFacts>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeInfo {
    pub hostname: String,
    #[serde(default)]
    pub kernel_release: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TargetInfo {
    pub cilium_version: String,
    pub capabilities: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VerdictInfo {
    pub go: bool,
    /// Absent from reports older than the field: read as true, as the report reader does.
    #[serde(default = "yes")]
    pub decided: bool,
    /// Absent from reports older than the field (None): derived from `go` and `decided`.
    #[serde(default)]
    pub readiness: Option<crate::model::Readiness>,
    pub capabilities: Vec<CapabilityInfo>,
}

fn yes() -> bool {
    true
}

impl VerdictInfo {
    pub fn readiness(&self) -> crate::model::Readiness {
        use crate::model::Readiness;
        self.readiness.unwrap_or(if self.go {
            Readiness::Go
        } else if self.decided {
            Readiness::NoGo
        } else {
            Readiness::Undecided
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CapabilityInfo {
    pub capability: String,
    pub go: bool,
    #[serde(default)]
    pub blocking: Vec<String>,
    #[serde(default)]
    pub unverified: Vec<String>,
}

#[derive(Deserialize)]
struct VersionOnly {
    schema_version: u32,
    #[serde(default)]
    tool_version: String,
}

/// One thing found in the input: a report, or why a report-like text was refused.
#[derive(Debug)]
pub enum Item {
    Report {
        source: String,
        report: Box<NodeReport>,
    },
    Refused {
        source: String,
        reason: String,
    },
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadStats {
    pub lines: u64,
    pub noise_lines: u64,
}

/// Expands the command line's paths: `-` is stdin, a directory is every regular file below it
/// (sorted, hidden files skipped), a file is itself.
pub fn expand(paths: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" || !path.is_dir() {
            out.push(path.clone());
            continue;
        }
        let mut stack = vec![path.clone()];
        let mut files = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    stack.push(entry.path());
                } else if kind.is_file() {
                    files.push(entry.path());
                }
            }
        }
        files.sort();
        out.extend(files);
    }
    Ok(out)
}

/// Opens `path` (`-` is stdin; anything else must be a regular file: a FIFO would block, a
/// device never end) and streams its items into `sink`, at most [`DEFAULT_MAX_INPUT_BYTES`].
pub fn read_path(path: &Path, stats: &mut ReadStats, sink: &mut dyn FnMut(Item)) -> io::Result<()> {
    let source: Box<dyn Read> = if crate::host::input::is_stdin(path) {
        Box::new(io::stdin().lock())
    } else {
        Box::new(crate::host::input::open_regular(path).map_err(io::Error::other)?)
    };
    let max = max_input_bytes();
    let mut limited = source.take(max + 1);
    read_stream(
        &crate::host::input::shown(path),
        BufReader::with_capacity(1 << 20, &mut limited),
        stats,
        sink,
    )?;
    if limited.limit() == 0 {
        return Err(io::Error::other(format!(
            "more than {max} bytes; the rest was not read (raise it with {MAX_INPUT_ENV}=BYTES)"
        )));
    }
    Ok(())
}

/// A pretty-printed report being collected line by line.
struct Pending {
    start_line: u64,
    prefix: Vec<u8>,
    text: Vec<u8>,
}

pub fn read_stream(
    name: &str,
    mut reader: impl BufRead,
    stats: &mut ReadStats,
    sink: &mut dyn FnMut(Item),
) -> io::Result<()> {
    let mut line = Vec::with_capacity(64 << 10);
    let mut line_no = 0u64;
    let mut pending: Option<Pending> = None;
    loop {
        line.clear();
        let too_long = read_line_bounded(&mut reader, &mut line, MAX_REPORT_BYTES)?;
        if line.is_empty() && !too_long {
            break;
        }
        line_no += 1;
        stats.lines += 1;
        let source = || format!("{name}:{line_no}");
        if too_long {
            pending = None;
            sink(Item::Refused {
                source: source(),
                reason: format!("line longer than {} MiB; skipped", MAX_REPORT_BYTES >> 20),
            });
            continue;
        }
        let body = trim_newline(&line);
        if let Some(p) = pending.as_mut() {
            let rest = body.strip_prefix(p.prefix.as_slice()).unwrap_or(body);
            p.text.extend_from_slice(rest);
            p.text.push(b'\n');
            if rest.trim_ascii_end() == b"}" {
                let p = pending.take().expect("pending is set");
                let source = format!("{name}:{}", p.start_line);
                sink(parse_report(&p.text, source));
            } else if p.text.len() > MAX_REPORT_BYTES {
                let p = pending.take().expect("pending is set");
                sink(Item::Refused {
                    source: format!("{name}:{}", p.start_line),
                    reason: format!("report larger than {} MiB; skipped", MAX_REPORT_BYTES >> 20),
                });
            }
            continue;
        }
        let Some(brace) = body.iter().position(|&b| b == b'{') else {
            if !body.trim_ascii().is_empty() {
                stats.noise_lines += 1;
            }
            continue;
        };
        let json = &body[brace..];
        if json.trim_ascii_end() == b"{" {
            pending = Some(Pending {
                start_line: line_no,
                prefix: body[..brace].to_vec(),
                text: b"{\n".to_vec(),
            });
            continue;
        }
        match parse_report(json, source()) {
            // Only text that claims to be a report is refused; other JSON is someone's log.
            Item::Refused { .. } if !contains(json, b"\"schema_version\"") => {
                stats.noise_lines += 1
            }
            item => sink(item),
        }
    }
    if let Some(p) = pending {
        sink(Item::Refused {
            source: format!("{name}:{}", p.start_line),
            reason: "report is cut off: the input ends before its closing `}`".into(),
        });
    }
    Ok(())
}

fn parse_report(json: &[u8], source: String) -> Item {
    match serde_json::from_slice::<NodeReport>(json) {
        Ok(report) if report.schema_version == crate::report::SCHEMA_VERSION => Item::Report {
            source,
            report: Box::new(report),
        },
        Ok(report) => Item::Refused {
            source,
            reason: unsupported(report.schema_version, &report.tool_version),
        },
        Err(e) => {
            // A newer schema may have changed the fields we read; say so rather than "invalid".
            let reason = match serde_json::from_slice::<VersionOnly>(json) {
                Ok(v) if v.schema_version != crate::report::SCHEMA_VERSION => {
                    unsupported(v.schema_version, &v.tool_version)
                }
                _ => format!("not a readable preflight report: {e}"),
            };
            Item::Refused { source, reason }
        }
    }
}

fn unsupported(version: u32, tool: &str) -> String {
    let tool = if tool.is_empty() {
        String::new()
    } else {
        format!(" (written by preflight {tool})")
    };
    format!(
        "schema_version {version}{tool}: this preflight ({}) reads schema_version {} only; \
         aggregate with the preflight version the nodes ran",
        env!("CARGO_PKG_VERSION"),
        crate::report::SCHEMA_VERSION
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Reads one line into `buf` (newline included), keeping at most `max` bytes; a longer line is
/// consumed to its end and reported as too long, so memory stays bounded.
fn read_line_bounded(reader: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    let mut too_long = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(too_long);
        }
        let (take, done) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len() + take > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        reader.consume(take);
        if done {
            return Ok(too_long);
        }
    }
}

/// Reads everything from a byte source (used by tests and the fuzz loop).
pub fn read_all(name: &str, input: impl Read) -> (Vec<Item>, ReadStats) {
    let mut items = Vec::new();
    let mut stats = ReadStats::default();
    let _ = read_stream(name, BufReader::new(input), &mut stats, &mut |i| {
        items.push(i)
    });
    (items, stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal schema-1 report as one line.
    pub(crate) fn line(host: &str, go: bool, blocking: &[&str]) -> String {
        serde_json::json!({
            "schema_version": 1,
            "tool_version": "0.1.0",
            "node": {"hostname": host, "kernel_release": "6.1.0-56-cloud-amd64"},
            "target": {"cilium_version": "1.18.4", "capabilities": ["base-datapath"]},
            "checks": [{"id": "bpf.x", "status": "pass", "evidence": ["{not json"]}],
            "verdict": {"go": go, "summary": "", "capabilities": [
                {"capability": "base-datapath", "go": go, "blocking": blocking, "unverified": []}
            ]},
            "timings": {"stages_ms": {}, "total_ms": 1.0}
        })
        .to_string()
    }

    fn hosts(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Item::Report { source, report } => format!("{}@{source}", report.node.hostname),
                Item::Refused { source, .. } => format!("refused@{source}"),
            })
            .collect()
    }

    #[test]
    fn kubectl_logs_with_prefixes_and_noise_give_one_report_per_pod() {
        let input = format!(
            "[pod/p-a/preflight] WARN probe took {{40 ms}}\n[pod/p-a/preflight] {}\n\
             2026-11-22T04:00:00.1Z {}\r\nerror: unable to retrieve container logs\n\n",
            line("a", true, &[]),
            line("b", false, &["bpf.x"])
        );
        let (items, stats) = read_all("logs", input.as_bytes());
        assert_eq!(hosts(&items), ["a@logs:2", "b@logs:3"]);
        assert_eq!(
            stats,
            ReadStats {
                lines: 5,
                noise_lines: 2
            }
        );
    }

    #[test]
    fn a_pretty_report_is_read_whole_even_behind_a_prefix() {
        let report: serde_json::Value = serde_json::from_str(&line("c", true, &[])).unwrap();
        let pretty = serde_json::to_string_pretty(&report).unwrap();
        let prefixed: String = pretty
            .lines()
            .map(|l| format!("[pod/p-c/preflight] {l}\n"))
            .collect();
        for input in [format!("{pretty}\n"), prefixed] {
            let (items, _) = read_all("f", input.as_bytes());
            assert_eq!(hosts(&items), ["c@f:1"], "{input}");
        }
    }

    #[test]
    fn another_schema_version_is_refused_by_file_and_line_and_says_why() {
        let v2 = r#"{"schema_version": 2, "tool_version": "0.9.0", "verdict": "go"}"#;
        let (items, _) = read_all("n.json", format!("noise\n{v2}\n").as_bytes());
        let Item::Refused { source, reason } = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(source, "n.json:2");
        assert!(
            reason.contains("schema_version 2 (written by preflight 0.9.0)"),
            "{reason}"
        );
    }

    #[test]
    fn broken_and_cut_off_reports_are_refused_not_dropped() {
        let good = line("d", true, &[]);
        let broken = &good[..good.len() / 2];
        let (items, _) = read_all("x", format!("{broken}\n{{\n  \"a\": 1,\n").as_bytes());
        assert_eq!(hosts(&items), ["refused@x:1", "refused@x:2"]);
        let Item::Refused { reason, .. } = &items[1] else {
            unreachable!()
        };
        assert!(reason.contains("cut off"), "{reason}");
    }

    #[test]
    fn an_overlong_line_is_refused_and_memory_stays_bounded() {
        let mut input = vec![b'x'; MAX_REPORT_BYTES + 10];
        input.push(b'\n');
        input.extend_from_slice(line("e", true, &[]).as_bytes());
        let (items, _) = read_all("big", input.as_slice());
        assert_eq!(hosts(&items), ["refused@big:1", "e@big:2"]);
    }

    #[test]
    fn json_log_lines_that_are_not_reports_are_noise() {
        let (items, stats) = read_all("l", &b"{\"level\":\"info\",\"msg\":\"hi\"}\n"[..]);
        assert!(items.is_empty());
        assert_eq!(stats.noise_lines, 1);
    }

    /// A bounded fuzz loop: mutated inputs (byte flips, cuts, splices of report lines and
    /// noise) must never panic, and every item must name where it came from.
    /// PREFLIGHT_FUZZ_ITERATIONS raises the count (default 2,000).
    #[test]
    fn fuzz_the_reader_with_mutated_inputs() {
        let iterations: usize = std::env::var("PREFLIGHT_FUZZ_ITERATIONS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(2_000);
        let report: serde_json::Value =
            serde_json::from_str(&line("f", false, &["bpf.x"])).unwrap();
        let seeds = [
            line("f", false, &["bpf.x"]),
            serde_json::to_string_pretty(&report).unwrap(),
            format!("[pod/x/y] {}\nnoise {{\n", line("g", true, &[])),
        ];
        // xorshift: deterministic, no dependency.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut refused = 0;
        for i in 0..iterations {
            let mut input = seeds[i % seeds.len()].clone().into_bytes();
            for _ in 0..(1 + next() % 4) {
                let at = (next() as usize) % input.len().max(1);
                match next() % 4 {
                    0 => input[at] = next() as u8,
                    1 => input.truncate(at),
                    2 => input.insert(at, b"{}\n\"[]:,"[(next() % 8) as usize]),
                    _ => {
                        let other = seeds[(next() as usize) % seeds.len()].as_bytes();
                        input.splice(at..at, other.iter().copied());
                    }
                }
                if input.is_empty() {
                    break;
                }
            }
            let (items, _) = read_all("fuzz", input.as_slice());
            for item in &items {
                match item {
                    Item::Report { source, .. } => assert!(source.starts_with("fuzz:")),
                    Item::Refused { source, reason } => {
                        refused += 1;
                        assert!(source.starts_with("fuzz:") && !reason.is_empty());
                    }
                }
            }
        }
        eprintln!("fuzz: {iterations} inputs, {refused} refusals, no panic");
    }
}
