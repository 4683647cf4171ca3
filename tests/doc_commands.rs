//! Every `preflight …` command the documentation shows — README.md, docs/**/*.md, the example CI
//! workflow and each subcommand's `--help` examples — is one the real command line accepts. A
//! renamed or removed flag fails here, naming the file and line that still shows it, instead of
//! failing a user who copies the line. Synopsis lines (`preflight job [--namespace NS] …`) are
//! checked flag by flag: each flag they name must exist on that subcommand.
use std::{
    fs,
    path::{Path, PathBuf},
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One command line as shown, with where it is shown.
#[derive(Debug)]
struct Shown {
    place: String,
    line: String,
}

/// Whether a fenced block of this language shows output as well as commands, so that only
/// prompted lines (`$ preflight`, `# preflight`) are commands.
fn shows_output(lang: &str) -> bool {
    matches!(lang, "text" | "console" | "shell-session")
}

/// The lines of `text` after joining `\` continuations and lines that start with a pipe.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut continued = false;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        let joins = continued || (trimmed.starts_with("| ") && !out.is_empty());
        let body = raw.trim_end().strip_suffix('\\');
        let piece = body.unwrap_or(raw).trim_end();
        match out.last_mut() {
            Some(last) if joins => {
                last.1.push(' ');
                last.1.push_str(piece.trim());
            }
            _ => out.push((i + 1, piece.to_string())),
        }
        continued = body.is_some();
    }
    out
}

/// Command lines in the fenced blocks of a Markdown file.
fn from_markdown(path: &Path, text: &str, found: &mut Vec<Shown>) {
    let mut lang: Option<String> = None;
    for (number, line) in logical_lines(text) {
        let trimmed = line.trim_start();
        if let Some(fence) = trimmed.strip_prefix("```") {
            lang = match lang {
                Some(_) => None,
                None => Some(fence.trim().to_string()),
            };
            continue;
        }
        let Some(lang) = &lang else { continue };
        let command = if let Some(rest) = trimmed
            .strip_prefix("$ ")
            .or_else(|| trimmed.strip_prefix("# "))
        {
            rest
        } else if shows_output(lang) {
            continue;
        } else {
            trimmed
        };
        if mentions_preflight(command) {
            found.push(Shown {
                place: format!("{}:{number}", relative(path)),
                line: command.to_string(),
            });
        }
    }
}

/// Command lines in a YAML workflow: the lines of its `run:` scripts that call preflight.
fn from_workflow(path: &Path, text: &str, found: &mut Vec<Shown>) {
    for (number, line) in logical_lines(text) {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || !trimmed.starts_with("preflight ") {
            continue;
        }
        found.push(Shown {
            place: format!("{}:{number}", relative(path)),
            line: trimmed.to_string(),
        });
    }
}

fn mentions_preflight(command: &str) -> bool {
    command.starts_with("preflight ")
        || command == "preflight"
        || command.contains("| preflight ")
        || command.contains("&& preflight")
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The words of each `preflight` command in a shell line: comments dropped, split at pipes,
/// `&&`, `;`, and redirections left out.
fn commands_in(line: &str) -> Result<Vec<Vec<String>>, String> {
    // A comment starts at a `#` after whitespace; so does the doc's "(see …)" aside.
    let code = match line.find("  #").or_else(|| line.find("   (")) {
        Some(at) => &line[..at],
        None => line,
    };
    let words = shlex::split(code).ok_or_else(|| format!("unbalanced quotes in {line:?}"))?;
    let mut commands = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut redirect = false;
    for word in words {
        match word.as_str() {
            "|" | "&&" | ";" | "||" => {
                commands.push(std::mem::take(&mut current));
                redirect = false;
            }
            ">" | ">>" | "<" | "2>" | "2>&1" => redirect = true,
            _ if redirect => redirect = false,
            _ => current.push(word),
        }
    }
    commands.push(current);
    Ok(commands
        .into_iter()
        .filter(|c| c.first().is_some_and(|w| w == "preflight"))
        .collect())
}

/// A usage synopsis rather than a command: optional parts in brackets, repetitions.
fn is_synopsis(words: &[String]) -> bool {
    words
        .iter()
        .any(|w| w.starts_with('[') || w.ends_with("]...") || w == "...")
}

/// Checks one command as shown; the error says what the command line refuses.
fn check(words: &[String]) -> Result<(), String> {
    let cli = preflight::cmd::command();
    if is_synopsis(words) {
        return check_synopsis(&cli, words);
    }
    match cli.try_get_matches_from(words) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Each flag a synopsis names exists on its subcommand.
fn check_synopsis(cli: &clap::Command, words: &[String]) -> Result<(), String> {
    let mut command = cli;
    let mut flags = Vec::new();
    for word in &words[1..] {
        let word = word.trim_start_matches('[').trim_end_matches("...");
        let word = word.trim_end_matches(']');
        if flags.is_empty()
            && !word.starts_with('-')
            && let Some(sub) = command.find_subcommand(word)
        {
            command = sub;
        } else if word.starts_with('-') {
            flags.push(word.split('=').next().unwrap_or(word).to_string());
        }
    }
    let known = |flag: &str| {
        command.get_arguments().any(|a| {
            flag.strip_prefix("--").is_some_and(|long| {
                a.get_long() == Some(long)
                    || a.get_all_aliases()
                        .is_some_and(|aliases| aliases.contains(&long))
            }) || flag
                .strip_prefix('-')
                .and_then(|s| s.chars().next())
                .is_some_and(|short| !flag.starts_with("--") && a.get_short() == Some(short))
        })
    };
    let unknown: Vec<_> = flags.iter().filter(|f| !known(f)).collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "`preflight {}` has no {unknown:?}",
            command.get_name()
        ))
    }
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

fn shown_in_docs() -> Vec<Shown> {
    let mut files = vec![repo().join("README.md")];
    markdown_files(&repo().join("docs"), &mut files);
    let mut found = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        from_markdown(file, &text, &mut found);
    }
    for entry in fs::read_dir(repo().join("docs/examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            let text = fs::read_to_string(&path).unwrap();
            from_workflow(&path, &text, &mut found);
        }
    }
    found
}

fn shown_in_help(command: &mut clap::Command, path: &str, found: &mut Vec<Shown>) {
    let help = command.render_long_help().to_string();
    if let Some((_, examples)) = help.split_once("Examples:") {
        for line in examples.lines() {
            let line = line.trim();
            if line.is_empty() && !found.is_empty() {
                continue;
            }
            if mentions_preflight(line) {
                found.push(Shown {
                    place: format!("`{path} --help`"),
                    line: line.to_string(),
                });
            }
        }
    }
    for sub in command.get_subcommands_mut() {
        if sub.is_hide_set() {
            continue;
        }
        let name = format!("{path} {}", sub.get_name());
        shown_in_help(sub, &name, found);
    }
}

fn failures(shown: &[Shown]) -> Vec<String> {
    let mut failures = Vec::new();
    for s in shown {
        match commands_in(&s.line) {
            Err(e) => failures.push(format!("{}: {e}", s.place)),
            Ok(commands) => {
                for words in commands {
                    if let Err(e) = check(&words) {
                        failures.push(format!("{}: `{}`\n  {}", s.place, s.line, e.trim()));
                    }
                }
            }
        }
    }
    failures
}

#[test]
fn every_command_the_docs_show_is_one_the_cli_accepts() {
    let shown = shown_in_docs();
    // The README alone shows the run, the migration and the cluster walkthroughs: if this count
    // falls, the extraction above stopped finding them, and the test would pass on nothing.
    let readme = shown
        .iter()
        .filter(|s| s.place.starts_with("README.md:"))
        .count();
    assert!(readme >= 10, "only {readme} commands found in README.md");
    assert!(shown.len() >= 40, "only {} commands found", shown.len());
    let failures = failures(&shown);
    assert!(
        failures.is_empty(),
        "{} of {} documented commands are refused:\n{}",
        failures.len(),
        shown.len(),
        failures.join("\n")
    );
}

#[test]
fn every_help_example_is_one_the_cli_accepts() {
    let mut found = Vec::new();
    // Width 0: the help as written, not wrapped to this terminal (a wrapped example would be
    // read as two commands).
    let mut cli = preflight::cmd::command().term_width(0);
    shown_in_help(&mut cli, "preflight", &mut found);
    assert!(
        found.len() >= 20,
        "only {} help examples found",
        found.len()
    );
    let failures = failures(&found);
    assert!(
        failures.is_empty(),
        "{} of {} help examples are refused:\n{}",
        failures.len(),
        found.len(),
        failures.join("\n")
    );
}

#[test]
fn the_check_refuses_what_the_cli_refuses() {
    // The checker itself: a flag that does not exist, in a command and in a synopsis, and a
    // subcommand that does not exist, are each reported; the shell splitting keeps quoted words.
    let bad = [
        "preflight run --no-such-flag",
        "preflight job [--no-such-flag NS]",
        "preflight frobnicate",
        "kubectl logs x | preflight aggregate --nope -",
    ];
    for line in bad {
        let shown = [Shown {
            place: "test".into(),
            line: line.into(),
        }];
        assert_eq!(failures(&shown).len(), 1, "{line} was accepted");
    }
    let words = commands_in(
        "preflight install --cluster r.log --node-exec 'ssh root@{node} preflight'  # note",
    )
    .unwrap();
    assert_eq!(words.len(), 1);
    assert_eq!(words[0].last().unwrap(), "ssh root@{node} preflight");
    assert!(check(&words[0]).is_ok());
    let lines = logical_lines("a \\\n  b\nc\n  | d\n");
    assert_eq!(
        lines,
        vec![(1, "a b".to_string()), (3, "c | d".to_string())]
    );
}
