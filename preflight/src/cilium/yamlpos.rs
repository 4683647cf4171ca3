//! Line numbers in block-style YAML, for messages: where a dotted key is set, and keys set twice
//! in one mapping. The YAML parser gives positions for syntax errors only; values files are
//! nearly always block style, which a line scan follows. Flow style (`a: {b: 1}`) and aliases are
//! not followed inside: a key in them is reported at the line of the flow mapping or alias, a key
//! brought in by `<<: *anchor` at the `<<` line; where even that fails, callers name the file.
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
    /// The value is written on the key's line as a flow mapping or an alias (`k: {a: 1}`,
    /// `k: *x`): keys below it are set on this line.
    inline: bool,
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
        let mut inline = false;
        if let Some(k) = key {
            let value = rest[rest.find(k).unwrap_or(0) + k.len()..]
                .trim_start_matches(['"', '\''])
                .trim_start_matches(':')
                .trim();
            if value.starts_with('|') || value.starts_with('>') {
                scalar_at = Some(indent);
            }
            // `k: &anchor {..}` is a flow mapping too.
            let value = match value.strip_prefix('&') {
                Some(v) => v.split_once(' ').map_or("", |(_, v)| v.trim_start()),
                None => value,
            };
            inline = value.starts_with('{') || value.starts_with('*');
        }
        out.push(Entry {
            line,
            indent,
            key,
            list_item,
            inline,
        });
    }
    out
}

/// The 1-based line where the dotted `path` is set (the last setting, as YAML keeps the last of
/// a repeated key), or None when the scan cannot follow it. A key that comes from a merge
/// (`<<: *base`) is reported at the `<<` line that brings it in, and one inside a flow mapping
/// or an alias (`relay: {enabled: true}`, `relay: *x`) at that line: the setting is made there.
pub fn locate(text: &str, path: &str) -> Option<usize> {
    let es = entries(text);
    let mut range = 0..es.len();
    let mut found: Option<usize> = None;
    let mut inline = false;
    for seg in path.split('.') {
        let block = &es[range.clone()];
        let Some(level) = block.iter().map(|e| e.indent).min() else {
            // Nothing below the last key: its value is on its own line, if anywhere.
            return found.filter(|_| inline);
        };
        let at_level = |k: &str| {
            block
                .iter()
                .enumerate()
                .rfind(|(_, e)| e.indent == level && e.key == Some(k) && !e.list_item)
        };
        let Some((offset, _)) = at_level(seg) else {
            return at_level("<<").map(|(_, e)| e.line + 1);
        };
        let idx = range.start + offset;
        inline = es[idx].inline;
        found = Some(es[idx].line + 1);
        let end = (idx + 1..range.end)
            .find(|&j| es[j].indent <= level)
            .unwrap_or(range.end);
        range = idx + 1..end;
    }
    found
}

/// 1-based lines where a second, third, … YAML document starts (`---` at column 0). A `---`
/// before any content opens the first document and is not counted. The scan is exact: YAML
/// forbids a line starting with `---` and a space inside any scalar, so it is always a marker.
pub fn document_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut content = false;
    for (i, line) in text.lines().enumerate() {
        let marker = line
            .strip_prefix("---")
            .is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t']));
        if marker {
            if content {
                starts.push(i + 1);
            }
            content = true;
        } else if !line.trim().is_empty() && !line.starts_with('#') && !line.starts_with('%') {
            content = true;
        }
    }
    starts
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
        // Repeated merge keys are not repeats: go-yaml v2 applies each `<<` in turn.
        if key == "<<" {
            top.last = Some(path);
            continue;
        }
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
    fn merged_and_flow_keys_are_found_where_they_are_set() {
        let text = "base: &b\n  enabled: true\nhubble:\n  relay:\n    port: 1\n    <<: *b\n  ui: {enabled: true}\n  peer: *b\n";
        assert_eq!(locate(text, "hubble.relay.enabled"), Some(6));
        assert_eq!(locate(text, "hubble.relay.port"), Some(5));
        assert_eq!(locate(text, "hubble.ui.enabled"), Some(7));
        assert_eq!(locate(text, "hubble.peer.enabled"), Some(8));
        assert_eq!(
            locate("hubble: {relay: {<<: *x}}\n", "hubble.relay.enabled"),
            Some(1)
        );
        // A scalar has nothing under it to locate.
        assert_eq!(locate("a: 1\n", "a.b"), None);
    }

    #[test]
    fn document_starts_skip_a_leading_marker() {
        assert_eq!(document_starts("a: 1\n---\nb: 2\n--- \nc: 3\n"), [2, 4]);
        assert_eq!(document_starts("# c\n---\na: 1\n"), Vec::<usize>::new());
        assert_eq!(document_starts("---\n---\n"), [2]);
        assert_eq!(document_starts("a: |\n  ---x\n----\n"), Vec::<usize>::new());
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
        // Two merge keys in one mapping both apply: not a duplicate.
        assert!(duplicate_keys("t:\n  <<: *a\n  <<: *b\n").is_empty());
        // In one list item: a duplicate.
        assert_eq!(duplicate_keys("l:\n- x: 1\n  x: 2\n")[0].path, "l[].x");
    }

    #[test]
    fn arbitrary_text_never_panics() {
        use proptest::prelude::*;
        proptest!(|(text in "[a-z:\\- \"'|#\n<*&{}]{0,200}", path in "[a-z]{1,3}(\\.[a-z]{1,3}){0,2}")| {
            let _ = locate(&text, &path);
            let _ = duplicate_keys(&text);
            let _ = document_starts(&text);
        });
        // Any text at all, multi-byte characters included (slicing must stay on boundaries).
        proptest!(|(text in "\\PC{0,120}(\n\\PC{0,40}){0,6}", path in "\\PC{1,8}")| {
            let _ = locate(&text, &path);
            let _ = duplicate_keys(&text);
            let _ = document_starts(&text);
        });
    }
}
