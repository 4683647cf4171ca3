//! Line numbers in block-style YAML, for messages: where a dotted key is set, and keys set twice
//! in one mapping. The YAML parser gives positions for syntax errors only; values files are
//! nearly always block style, which a line scan follows. Flow style (`a: {b: 1}`) is not followed:
//! callers then name just the file.
use std::collections::HashMap;

/// One `key:` line (or a list item without a key, which still bounds blocks).
struct Entry<'a> {
    /// 0-based line.
    line: usize,
    /// Column of the key; for `- key:` the column after the dash.
    indent: usize,
    key: Option<&'a str>,
    /// The first key of a list item (`- key:`): starts a new mapping.
    list_item: bool,
}

/// The key of `key: value` / `"key": value` / `key:`, unquoted; None for anything else.
fn key_of(rest: &str) -> Option<&str> {
    if let Some(q @ ('"' | '\'')) = rest.chars().next() {
        let close = rest[1..].find(q)? + 1;
        let after = &rest[close + 1..];
        let after = after.trim_start();
        return (after == ":" || after.starts_with(": ")).then(|| &rest[1..close]);
    }
    if rest.starts_with(['{', '[', '&', '*', '!', '|', '>']) {
        return None;
    }
    let pos = rest
        .char_indices()
        .find(|&(i, c)| c == ':' && matches!(rest[i + 1..].chars().next(), None | Some(' ')))?
        .0;
    let key = rest[..pos].trim_end();
    (!key.is_empty() && !key.contains(" #")).then_some(key)
}

fn entries(text: &str) -> Vec<Entry<'_>> {
    let mut out = Vec::new();
    // Inside a block scalar (`key: |`): lines deeper than its key are text, not keys.
    let mut scalar_at: Option<usize> = None;
    for (line, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        let mut indent = raw.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(at) = scalar_at {
            if indent > at {
                continue;
            }
            scalar_at = None;
        }
        if trimmed.starts_with("---") || trimmed.starts_with("...") {
            continue;
        }
        let mut rest = trimmed;
        let mut list_item = false;
        while let Some(r) = rest
            .strip_prefix("- ")
            .or_else(|| (rest == "-").then_some(""))
        {
            let inner = r.trim_start();
            indent += rest.len() - inner.len();
            rest = inner;
            list_item = true;
        }
        let key = key_of(rest);
        if let Some(k) = key {
            let value = rest[rest.find(k).unwrap_or(0) + k.len()..]
                .trim_start_matches(['"', '\''])
                .trim_start_matches(':')
                .trim();
            if value.starts_with('|') || value.starts_with('>') {
                scalar_at = Some(indent);
            }
        }
        out.push(Entry {
            line,
            indent,
            key,
            list_item,
        });
    }
    out
}

/// The 1-based line where the dotted `path` is set (the last setting, as YAML keeps the last of
/// a repeated key), or None when the scan cannot follow it.
pub fn locate(text: &str, path: &str) -> Option<usize> {
    let es = entries(text);
    let mut range = 0..es.len();
    let mut found = None;
    for seg in path.split('.') {
        let block = &es[range.clone()];
        let level = block.iter().map(|e| e.indent).min()?;
        let (offset, _) = block
            .iter()
            .enumerate()
            .rfind(|(_, e)| e.indent == level && e.key == Some(seg) && !e.list_item)?;
        let idx = range.start + offset;
        found = Some(es[idx].line + 1);
        let end = (idx + 1..range.end)
            .find(|&j| es[j].indent <= level)
            .unwrap_or(range.end);
        range = idx + 1..end;
    }
    found
}

/// A key set twice in one mapping: Helm keeps the last silently (helm/helm#4107).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// Dotted path (`[]` for a list item).
    pub path: String,
    /// 1-based lines of the first and the repeated setting.
    pub first: usize,
    pub again: usize,
}

pub fn duplicate_keys(text: &str) -> Vec<Duplicate> {
    struct Level {
        indent: usize,
        parent: String,
        seen: HashMap<String, usize>,
        last: Option<String>,
    }
    let mut stack: Vec<Level> = Vec::new();
    let mut out = Vec::new();
    for e in entries(text) {
        while stack
            .last()
            .is_some_and(|t| t.indent > e.indent || (e.list_item && t.indent >= e.indent))
        {
            stack.pop();
        }
        let Some(key) = e.key else {
            continue;
        };
        if stack.last().is_none_or(|t| t.indent < e.indent) {
            let parent = stack
                .last()
                .and_then(|t| t.last.clone())
                .unwrap_or_default();
            let parent = if e.list_item {
                format!("{parent}[]")
            } else {
                parent
            };
            stack.push(Level {
                indent: e.indent,
                parent,
                seen: HashMap::new(),
                last: None,
            });
        }
        let Some(top) = stack.last_mut() else {
            continue;
        };
        let path = if top.parent.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", top.parent)
        };
        match top.seen.get(key) {
            Some(&first) => out.push(Duplicate {
                path: path.clone(),
                first,
                again: e.line + 1,
            }),
            None => {
                top.seen.insert(key.to_string(), e.line + 1);
            }
        }
        top.last = Some(path);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: &str = "\
# comment
routingMode: native
encryption:
  enabled: true
  # the type
  type: wg
hubble:
  relay:
    enabled: notabool
  ui:
    enabled: true
tolerations:
- key: a
  operator: Exists
- key: b
extraConfig: |
  type: not-a-key
  type: again
\"quoted.key\": 1
";

    #[test]
    fn dotted_paths_are_found_on_their_line() {
        assert_eq!(locate(VALUES, "routingMode"), Some(2));
        assert_eq!(locate(VALUES, "encryption.type"), Some(6));
        assert_eq!(locate(VALUES, "hubble.relay.enabled"), Some(9));
        assert_eq!(locate(VALUES, "hubble.ui.enabled"), Some(11));
        assert_eq!(
            locate(VALUES, "quoted.key"),
            None,
            "a dot inside a key is not a path"
        );
        assert_eq!(locate(VALUES, "hubble.enabled"), None);
        assert_eq!(
            locate(VALUES, "type"),
            None,
            "nested keys are not top-level ones"
        );
        // The last of a repeated key is the one that counts.
        assert_eq!(locate("a: 1\nb: 2\na: 3\n", "a"), Some(3));
    }

    #[test]
    fn duplicates_are_found_per_mapping_and_block_scalars_are_text() {
        assert!(
            duplicate_keys(VALUES).is_empty(),
            "{:?}",
            duplicate_keys(VALUES)
        );
        assert_eq!(
            duplicate_keys("a: 1\na: 2\n"),
            [Duplicate {
                path: "a".into(),
                first: 1,
                again: 2
            }]
        );
        let nested = "hubble:\n  enabled: true\n  relay:\n    enabled: true\n  enabled: false\nl7Proxy: true\n";
        assert_eq!(
            duplicate_keys(nested),
            [Duplicate {
                path: "hubble.enabled".into(),
                first: 2,
                again: 5
            }]
        );
        // Same key under different parents, or in different list items: not duplicates.
        assert!(duplicate_keys("a:\n  x: 1\nb:\n  x: 2\nl:\n- x: 1\n- x: 2\n").is_empty());
        // In one list item: a duplicate.
        assert_eq!(duplicate_keys("l:\n- x: 1\n  x: 2\n")[0].path, "l[].x");
    }

    #[test]
    fn arbitrary_text_never_panics() {
        use proptest::prelude::*;
        proptest!(|(text in "[a-z:\\- \"'|#\n]{0,200}", path in "[a-z]{1,3}(\\.[a-z]{1,3}){0,2}")| {
            let _ = locate(&text, &path);
            let _ = duplicate_keys(&text);
        });
        // Any text at all, multi-byte characters included (slicing must stay on boundaries).
        proptest!(|(text in "\\PC{0,120}(\n\\PC{0,40}){0,6}", path in "\\PC{1,8}")| {
            let _ = locate(&text, &path);
            let _ = duplicate_keys(&text);
        });
    }
}
