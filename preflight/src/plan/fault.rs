//! Testing hook for the fault-injection matrix: every place where a crash could leave the node
//! half-changed calls [`point`]. In debug builds (what `cargo test` runs), `PREFLIGHT_FAULT_AT=n`
//! makes the n-th point return an error and `PREFLIGHT_KILL_AT=n` makes the process SIGKILL
//! itself there. Release builds ignore both.
use std::sync::{
    OnceLock,
    atomic::{AtomicU32, Ordering},
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn env_number(name: &str) -> Option<u32> {
    if !cfg!(debug_assertions) {
        return None;
    }
    std::env::var(name).ok()?.trim().parse().ok()
}

fn targets() -> (Option<u32>, Option<u32>) {
    static T: OnceLock<(Option<u32>, Option<u32>)> = OnceLock::new();
    *T.get_or_init(|| {
        (
            env_number("PREFLIGHT_FAULT_AT"),
            env_number("PREFLIGHT_KILL_AT"),
        )
    })
}

/// A crash point. `what` names it in the injected error and in debug logs.
pub fn point(what: &str) -> anyhow::Result<()> {
    let (fault_at, kill_at) = targets();
    if fault_at.is_none() && kill_at.is_none() {
        return Ok(());
    }
    let n = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
    tracing::debug!("fault point {n}: {what}");
    if kill_at == Some(n) {
        eprintln!("preflight: test hook: SIGKILL at fault point {n} ({what})");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    if fault_at == Some(n) {
        anyhow::bail!("injected fault at point {n} ({what})");
    }
    Ok(())
}

/// How many points have passed (tests use it to know when the matrix is exhausted).
pub fn passed() -> u32 {
    COUNTER.load(Ordering::SeqCst)
}
