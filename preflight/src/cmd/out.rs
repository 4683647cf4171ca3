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
