//! A Helm chart given with `--chart DIR|TGZ`: its version, default values, values.schema.json,
//! and its templates (the keys they read, the `fail` rules of templates/validate.yaml), read
//! from a directory or a `.tgz` as `helm pull`/`helm package` write it (one top-level folder;
//! subcharts under `charts/` are not this chart's and are skipped).
use std::{io::Read, path::Path};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    chartdata::Extract,
    values::{ValuesError, parse_yaml},
};

/// Most bytes a chart archive may expand to while we look for its files (Cilium's chart is
/// ~2 MiB unpacked), so a gzip bomb ends quickly.
const MAX_UNPACKED_BYTES: u64 = 64 << 20;
/// Most entries looked at in a chart archive (Cilium's has ~300).
const MAX_ENTRIES: usize = 100_000;
/// Most bytes and files read from one chart's templates, and how deep its folders go.
const MAX_TEMPLATE_BYTES: u64 = 64 << 20;
const MAX_TEMPLATE_FILES: usize = 4096;
const MAX_TEMPLATE_DEPTH: usize = 8;

#[derive(Debug, Clone)]
pub struct Chart {
    pub source: String,
    pub version: Option<String>,
    pub app_version: Option<String>,
    pub default_values: Value,
    pub schema: Option<Value>,
    /// The templates, by path under the chart (`templates/validate.yaml`).
    pub templates: Vec<(String, String)>,
}

/// What the chart's schema said about the values (part of the target in the report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChartInfo {
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether the chart ships values.schema.json.
    pub has_schema: bool,
    /// Schema violations, as `path: message`; empty when the values validate.
    pub schema_errors: Vec<String>,
}

impl Chart {
    pub fn load(path: &Path) -> Result<Self, ValuesError> {
        let source = path.display().to_string();
        let err = |message: String| ValuesError::File {
            file: source.clone(),
            message,
        };
        let files = if path.is_dir() {
            read_dir_files(path)?
        } else {
            read_tgz_files(path)?
        };
        let templates: Vec<(String, String)> = files
            .iter()
            .filter(|(n, _)| n.starts_with("templates/"))
            .cloned()
            .collect();
        let get = |name: &str| files.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        let chart_yaml = get("Chart.yaml").ok_or_else(|| err("no Chart.yaml".into()))?;
        let meta = parse_yaml(&format!("{source}/Chart.yaml"), chart_yaml)?;
        let text = |k: &str| meta.get(k).and_then(|v| super::values::as_text(Some(v)));
        let default_values = match get("values.yaml") {
            Some(t) => parse_yaml(&format!("{source}/values.yaml"), t)?,
            None => Value::Object(Default::default()),
        };
        let schema = match get("values.schema.json") {
            Some(t) => Some(serde_json::from_str(t).map_err(|e| {
                // serde_json repeats the position in its message; keep only the cause.
                let message = e.to_string();
                let message = message.split(" at line ").next().unwrap_or(&message);
                ValuesError::Json {
                    file: format!("{source}/values.schema.json"),
                    at: (e.line(), e.column()),
                    message: message.to_string(),
                }
            })?),
            None => None,
        };
        Ok(Self {
            source,
            version: text("version"),
            app_version: text("appVersion"),
            default_values,
            schema,
            templates,
        })
    }

    /// What preflight keeps of the chart: its key set, validate.yaml rules and the defaults
    /// of the paths preflight's own rules read (chartdata). A template that does not parse
    /// names the file and line.
    pub fn extract(&self) -> Result<Extract, ValuesError> {
        super::chartdata::extract(self).map_err(|(file, e)| ValuesError::File {
            file: format!("{}/{file}", self.source),
            message: e.to_string(),
        })
    }

    /// Validates the values Helm would render with (defaults coalesced with the user's).
    pub fn check(&self, effective: &Value) -> Result<ChartInfo, ValuesError> {
        let schema_errors = match &self.schema {
            Some(schema) => violations(schema, effective).map_err(|message| ValuesError::File {
                file: format!("{}/values.schema.json", self.source),
                message,
            })?,
            None => Vec::new(),
        };
        Ok(ChartInfo {
            source: self.source.clone(),
            version: self.version.clone(),
            has_schema: self.schema.is_some(),
            schema_errors,
        })
    }
}

/// Schema violations of `effective` as `path: message` (empty when it validates).
pub fn violations(schema: &Value, effective: &Value) -> Result<Vec<String>, String> {
    let validator =
        jsonschema::validator_for(schema).map_err(|e| format!("not a usable JSON Schema: {e}"))?;
    Ok(validator
        .iter_errors(effective)
        .map(|e| {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() {
                "(top level)".to_string()
            } else {
                at.trim_start_matches('/').replace('/', ".")
            };
            format!("{at}: {e}")
        })
        .collect())
}

const WANTED: &[&str] = &["Chart.yaml", "values.yaml", "values.schema.json"];

/// Whether a path under the chart is one preflight reads: the top files and the templates.
fn wanted(relative: &str) -> bool {
    WANTED.contains(&relative)
        || (relative.starts_with("templates/")
            && relative.split('/').count() <= MAX_TEMPLATE_DEPTH + 1
            && (relative.ends_with(".yaml")
                || relative.ends_with(".tpl")
                || relative.ends_with(".txt")))
}

/// Counts what a chart's templates take, refusing a chart bigger than any real one.
#[derive(Default)]
struct Budget {
    files: usize,
    bytes: u64,
}

impl Budget {
    fn take(&mut self, name: &str, text: &str) -> std::io::Result<()> {
        self.files += 1;
        self.bytes += text.len() as u64;
        if self.files > MAX_TEMPLATE_FILES || self.bytes > MAX_TEMPLATE_BYTES {
            return Err(std::io::Error::other(format!(
                "more than {MAX_TEMPLATE_FILES} files or {} MiB of templates (at {name})",
                MAX_TEMPLATE_BYTES >> 20
            )));
        }
        Ok(())
    }
}

/// The wanted files of a chart dir. A missing top file is left out (a chart need not ship a
/// schema); one that is there but is not a regular file (a FIFO, a directory, a symlink loop),
/// too large or not text is an error: skipping it would judge without it. Templates are
/// regular files and folders only (a symlink could lead out of the chart), within a budget.
fn read_dir_files(dir: &Path) -> Result<Vec<(String, String)>, ValuesError> {
    let source = dir.display().to_string();
    let io = |e: std::io::Error| ValuesError::File {
        file: source.clone(),
        message: e.to_string(),
    };
    let mut out = Vec::new();
    for name in WANTED {
        let p = dir.join(name);
        match crate::host::input::read_text(&p, "chart files") {
            Ok(text) => out.push((name.to_string(), text)),
            Err(crate::host::input::InputError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut budget = Budget::default();
    let mut pending = vec![(dir.join("templates"), "templates".to_string(), 0)];
    while let Some((path, relative, depth)) = pending.pop() {
        if depth > MAX_TEMPLATE_DEPTH {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        let mut entries: Vec<_> = entries.collect::<Result<_, _>>().map_err(io)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = format!("{relative}/{}", entry.file_name().to_string_lossy());
            let kind = entry.file_type().map_err(io)?;
            if kind.is_dir() {
                pending.push((entry.path(), name, depth + 1));
            } else if kind.is_file() && wanted(&name) {
                let text = crate::host::input::read_text(&entry.path(), "chart files")?;
                budget.take(&name, &text).map_err(io)?;
                out.push((name, text));
            }
        }
    }
    Ok(out)
}

/// The wanted files under the archive's top folder (`cilium/values.yaml`,
/// `cilium/templates/…`), not a subchart's (`cilium/charts/…`). The archive must be a regular
/// file; it is read with caps on what it unpacks to and how many entries it has, and a wanted
/// top file that is not a regular file in it is an error.
fn read_tgz_files(path: &Path) -> Result<Vec<(String, String)>, ValuesError> {
    let source = path.display().to_string();
    let err = |message: String| ValuesError::File {
        file: source.clone(),
        message,
    };
    let bad = |e: std::io::Error| err(format!("not a readable chart archive: {e}"));
    let file = crate::host::input::open_regular(path)?;
    let unpacked = Capped {
        inner: flate2::read::GzDecoder::new(file),
        left: MAX_UNPACKED_BYTES,
    };
    let mut archive = tar::Archive::new(unpacked);
    let mut out = Vec::new();
    let mut budget = Budget::default();
    let max = crate::host::input::max_bytes();
    for (count, entry) in archive.entries().map_err(bad)?.enumerate() {
        if count >= MAX_ENTRIES {
            return Err(err(format!("more than {MAX_ENTRIES} entries; not a chart")));
        }
        let entry = entry.map_err(bad)?;
        let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let Some((_top, relative)) = name.split_once('/') else {
            continue;
        };
        let relative = relative.trim_end_matches('/').to_string();
        if !wanted(&relative) {
            continue;
        }
        if !entry.header().entry_type().is_file() {
            if WANTED.contains(&relative.as_str()) {
                return Err(err(format!(
                    "{name} in the archive is not a regular file ({:?})",
                    entry.header().entry_type()
                )));
            }
            continue;
        }
        let mut bytes = Vec::new();
        entry.take(max + 1).read_to_end(&mut bytes).map_err(bad)?;
        if bytes.len() as u64 > max {
            return Err(crate::host::input::InputError::TooLarge {
                file: format!("{source}:{name}"),
                limit: max,
                kind: "chart files",
            }
            .into());
        }
        let text = crate::host::input::text(format!("{source}:{name}"), bytes)?;
        if relative.starts_with("templates/") {
            budget.take(&relative, &text).map_err(bad)?;
        }
        out.push((relative, text));
    }
    Ok(out)
}

/// A reader that fails once it has given `left` bytes: the unpacked size of an archive.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other(format!(
                "it unpacks to more than {MAX_UNPACKED_BYTES} bytes"
            )));
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}
