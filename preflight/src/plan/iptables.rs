//! flannel's iptables leftovers. flanneld creates FLANNEL-POSTRTG (nat: masquerade of pod
//! traffic) and FLANNEL-FWD (filter: accept the pod CIDR) and jumps to them from POSTROUTING and
//! FORWARD; nothing removes them when flannel stops, and their masquerade and accept rules keep
//! matching the pod CIDR that Cilium now owns. This module reads `iptables-save` output and says
//! which commands remove them, and which tables a snapshot must hold to put them back.

/// Chains flannel owns start with this.
pub const FLANNEL_PREFIX: &str = "FLANNEL-";

/// One table of `iptables-save` output.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: String,
    /// The table's text from `*name` through `COMMIT`, as saved (what a restore needs).
    pub text: String,
    /// Chains declared in it (`:NAME POLICY [packets:bytes]`).
    pub chains: Vec<String>,
    /// `-A CHAIN args…`: the chain and the rule's arguments, unquoted.
    pub rules: Vec<(String, Vec<String>)>,
}

/// Parse `iptables-save` output. Err: the 1-based line and what is wrong with it.
pub fn parse(save: &str) -> Result<Vec<Table>, (usize, String)> {
    let mut tables: Vec<Table> = Vec::new();
    let mut open = false;
    for (i, line) in save.lines().enumerate() {
        let n = i + 1;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(name) = t.strip_prefix('*') {
            if open {
                return Err((n, "a table starts before the previous one's COMMIT".into()));
            }
            open = true;
            tables.push(Table {
                name: name.to_string(),
                text: String::new(),
                chains: Vec::new(),
                rules: Vec::new(),
            });
        } else if !open {
            return Err((
                n,
                format!("{t:?} outside a table (no `*table` line before it)"),
            ));
        }
        // `open` implies a table was pushed.
        let Some(table) = tables.last_mut() else {
            return Err((n, "no table".into()));
        };
        table.text.push_str(line);
        table.text.push('\n');
        if t == "COMMIT" {
            open = false;
        } else if let Some(decl) = t.strip_prefix(':') {
            match decl.split_whitespace().next() {
                Some(chain) => table.chains.push(chain.to_string()),
                None => return Err((n, "a chain declaration without a name".into())),
            }
        } else if let Some(rule) = t.strip_prefix("-A ") {
            let mut words = split_words(rule).map_err(|why| (n, why))?;
            if words.is_empty() {
                return Err((n, "a rule without a chain".into()));
            }
            let chain = words.remove(0);
            table.rules.push((chain, words));
        } else if !t.starts_with('*') {
            return Err((n, format!("unexpected line {t:?}")));
        }
    }
    if open {
        return Err((save.lines().count(), "the last table has no COMMIT".into()));
    }
    Ok(tables)
}

/// Split a saved rule into its arguments: whitespace separates them, except inside double
/// quotes (`--comment "flanneld masq"`), where `\"` and `\\` are escapes.
fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => match chars.next() {
                Some(e) => cur.push(e),
                None => return Err("a backslash at the end of the rule".into()),
            },
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("an unterminated quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn is_flannel(chain: &str) -> bool {
    chain.starts_with(FLANNEL_PREFIX)
}

/// The tables that hold flannel chains (what a snapshot must restore).
pub fn flannel_tables(tables: &[Table]) -> Vec<&Table> {
    tables
        .iter()
        .filter(|t| t.chains.iter().any(|c| is_flannel(c)))
        .collect()
}

/// The `iptables` argument vectors that remove flannel's chains: first the rules in other
/// chains that jump to them (deleted by their exact spec, not by position, so a rule kube-proxy
/// inserted meanwhile is never hit), then every flannel chain flushed, then deleted (flushed
/// first since one flannel chain may jump to another).
pub fn removal(tables: &[Table]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for t in flannel_tables(tables) {
        for (chain, rule) in &t.rules {
            let jumps = rule
                .windows(2)
                .any(|w| (w[0] == "-j" || w[0] == "-g") && is_flannel(&w[1]));
            if !is_flannel(chain) && jumps {
                let mut a = vec!["-t".to_string(), t.name.clone(), "-D".into(), chain.clone()];
                a.extend(rule.iter().cloned());
                out.push(a);
            }
        }
    }
    for verb in ["-F", "-X"] {
        for t in flannel_tables(tables) {
            for c in t.chains.iter().filter(|c| is_flannel(c)) {
                out.push(vec!["-t".into(), t.name.clone(), verb.into(), c.clone()]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A k3s node after flannel: flannel's chains next to kube-proxy's (shared with
    /// tests/migration.rs and the iptables_save fuzz seeds).
    const SAVE: &str = include_str!("../../../fixtures/iptables/k3s-flannel.save");

    #[test]
    fn removes_jumps_by_spec_then_flushes_and_deletes() {
        let tables = parse(SAVE).unwrap();
        assert_eq!(
            flannel_tables(&tables)
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["nat", "filter"]
        );
        let cmds: Vec<String> = removal(&tables).iter().map(|a| a.join("|")).collect();
        assert_eq!(
            cmds,
            [
                "-t|nat|-D|POSTROUTING|-m|comment|--comment|flanneld masq|-j|FLANNEL-POSTRTG",
                "-t|filter|-D|FORWARD|-m|comment|--comment|flanneld forward|-j|FLANNEL-FWD",
                "-t|nat|-F|FLANNEL-POSTRTG",
                "-t|filter|-F|FLANNEL-FWD",
                "-t|nat|-X|FLANNEL-POSTRTG",
                "-t|filter|-X|FLANNEL-FWD",
            ]
        );
        assert!(flannel_tables(&tables)[0].text.starts_with("*nat\n"));
        assert!(flannel_tables(&tables)[0].text.ends_with("COMMIT\n"));
    }

    #[test]
    fn nothing_to_do_without_flannel_chains() {
        let tables = parse("*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n").unwrap();
        assert!(removal(&tables).is_empty());
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_input_names_the_line() {
        assert_eq!(parse("*nat\n-A X \"open\n").unwrap_err().0, 2);
        assert_eq!(parse("-A X -j Y\n").unwrap_err().0, 1);
        assert_eq!(parse("*nat\n:X - [0:0]\n").unwrap_err().0, 2);
        assert_eq!(parse("*nat\n*filter\nCOMMIT\n").unwrap_err().0, 2);
    }
}
