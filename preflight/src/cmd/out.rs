//! Standard output for every subcommand. `println!` panics when stdout is a pipe whose reader has
//! gone (`preflight probe --all | head -1`: EPIPE, since Rust ignores SIGPIPE) and exits 101 with
//! a panic message. Here a closed reader ends the output, not the command: what follows is
//! dropped and the command finishes with its own exit code (an install keeps its journal going
//! rather than dying halfway). Any other write error is kept for `main`, which exits 2 with it.
use std::{
    io::{self, Write},
    sync::Mutex,
};

#[derive(Default)]
struct State {
    /// The reader went away; nothing more is written.
    closed: bool,
    /// The first write error other than EPIPE.
    error: Option<io::Error>,
}

static STATE: Mutex<State> = Mutex::new(State {
    closed: false,
    error: None,
});

/// Writes `s` to stdout and flushes it, so an error shows up here and not in the exit-time
/// flush, where std drops it silently.
pub fn write_str(s: &str) {
    let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
    if state.closed || state.error.is_some() {
        return;
    }
    let mut stdout = io::stdout().lock();
    match stdout.write_all(s.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => state.closed = true,
        Err(e) => state.error = Some(e),
    }
}

/// The write error (not EPIPE) that cut the output short, if any.
pub fn take_error() -> Option<io::Error> {
    STATE.lock().unwrap_or_else(|p| p.into_inner()).error.take()
}

/// `print!` that treats a closed reader as the end of the output (see [`write_str`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cmd::out::write_str(&::std::format!($($arg)*))
    };
}

/// `println!` that treats a closed reader as the end of the output (see [`write_str`]).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cmd::out::write_str("\n")
    };
    ($($arg:tt)*) => {
        $crate::cmd::out::write_str(&::std::format!("{}\n", ::std::format_args!($($arg)*)))
    };
}

/// The width to wrap text to: the terminal's when stdout is one, else `COLUMNS` when set (a
/// script that wants wrapped text), else none: a file or a pipe keeps one line per finding, for
/// grep.
pub fn wrap_width() -> Option<usize> {
    use std::io::IsTerminal;
    if io::stdout().is_terminal()
        && let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size()
    {
        return Some(usize::from(w));
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|w| *w > 0)
}

/// `text` with every line wider than the terminal (see [`wrap_width`]) broken at spaces, each
/// continuation indented under the line's own text (`  PASS id …` continues at column 7, a
/// `fix:` line deeper). ANSI colours do not count towards the width.
pub fn wrap_to_terminal(text: &str) -> String {
    match wrap_width() {
        Some(width) => wrap(text, width),
        None => text.to_string(),
    }
}

/// See [`wrap_to_terminal`]; a word longer than the width stays whole on its own line.
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if textwrap::core::display_width(body) <= width {
            out.push_str(line);
            continue;
        }
        let lead = body.len() - body.trim_start().len();
        let indent = " ".repeat((lead + 5).min(width / 2));
        let options = textwrap::Options::new(width)
            .subsequent_indent(&indent)
            .break_words(false)
            // Ids, paths and flags hold hyphens: a line never breaks inside them.
            .word_splitter(textwrap::WordSplitter::NoHyphenation);
        out.push_str(&textwrap::fill(body, options));
        out.push_str(newline);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn long_lines_wrap_under_their_own_text_and_short_ones_stay() {
        let text = "short\n  PASS kernel.release  6.1.83 is new enough for every Cilium release preflight-knows\n";
        let wrapped = wrap(text, 40);
        assert!(wrapped.lines().all(|l| l.len() <= 40), "{wrapped}");
        assert!(
            wrapped.starts_with("short\n  PASS kernel.release"),
            "{wrapped}"
        );
        assert!(
            wrapped.lines().skip(2).all(|l| l.starts_with("       ")),
            "{wrapped}"
        );
        // Nothing is lost but the spaces where lines broke.
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(words(&wrapped), words(text));
        // Colour codes take no columns.
        let coloured = "\x1b[32mPASS\x1b[0m abcd";
        assert_eq!(wrap(coloured, 9), coloured);
    }
}
