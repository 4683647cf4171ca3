//! A Helm chart given with `--chart DIR|TGZ`: its version, default values and values.schema.json,
//! read from a directory or a packaged `.tgz` (one top-level folder, as `helm package` makes).
use std::{io::Read, path::Path};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::values::{ValuesError, parse_yaml};

/// Largest chart file read, so a hostile archive cannot exhaust memory.
const MAX_FILE_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone)]
pub struct Chart {
    pub source: String,
    pub version: Option<String>,
    pub app_version: Option<String>,
    pub default_values: Value,
    pub schema: Option<Value>,
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
            read_dir_files(path).map_err(|e| err(e.to_string()))?
        } else {
            read_tgz_files(path).map_err(|e| err(format!("not a readable chart archive: {e}")))?
        };
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

fn read_dir_files(dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for name in WANTED {
        let p = dir.join(name);
        if p.is_file() {
            let mut text = String::new();
            std::fs::File::open(&p)?
                .take(MAX_FILE_BYTES)
                .read_to_string(&mut text)?;
            out.push((name.to_string(), text));
        }
    }
    Ok(out)
}

/// The wanted files directly under the archive's top folder (`cilium/values.yaml`), not a
/// subchart's.
fn read_tgz_files(path: &Path) -> std::io::Result<Vec<(String, String)>> {
    let file = std::fs::File::open(path)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut parts = name.split('/');
        let (Some(_top), Some(file), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if WANTED.contains(&file) {
            let mut text = String::new();
            entry.take(MAX_FILE_BYTES).read_to_string(&mut text)?;
            out.push((file.to_string(), text));
        }
    }
    Ok(out)
}
