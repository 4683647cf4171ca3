//! Runs a command and measures what the issue bounds: wall time and peak RSS (wait4's
//! rusage), with a watchdog that kills a hang so the test fails instead of hanging.
use std::{
    io::Read,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

pub struct Measured {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub secs: f64,
    pub max_rss_kb: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Measured {
    pub fn describe(&self) -> String {
        format!(
            "exit {:?} signal {:?}, {:.2} s, {} KiB peak RSS\n--- stdout (tail)\n{}\n--- stderr (tail)\n{}",
            self.code,
            self.signal,
            self.secs,
            self.max_rss_kb,
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

fn tail_lines() -> usize {
    std::env::var("PREFLIGHT_TEST_TAIL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(tail_lines())..].join("\n")
}

/// Runs `c` (stdin as set by the caller, null otherwise), killing it after `limit`.
pub fn measure(mut c: Command, limit: Duration) -> Measured {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = c.spawn().expect("spawn");
    let pid = child.id() as i32;
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let (done, watch) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if watch.recv_timeout(limit).is_err() {
            // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child; std's Child is never waited on afterwards.
    unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let _ = done.send(());
    let _ = watchdog.join();
    let secs = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&o.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&e.join().unwrap_or_default()).into_owned();
    drop(child);
    Measured {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        secs,
        max_rss_kb: ru.ru_maxrss,
        stdout,
        stderr,
    }
}
