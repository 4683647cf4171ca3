//! Runs a command and measures it: wall time, CPU time and peak RSS from wait4(2).
use std::{
    process::{Command, Stdio},
    time::Instant,
};

pub struct Sample {
    pub wall_ms: f64,
    pub cpu_ms: f64,
    pub max_rss_kib: i64,
    pub stdout: Vec<u8>,
}

pub fn run(cmd: &mut Command) -> anyhow::Result<Sample> {
    use std::io::Read;
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_end(&mut stdout)?;
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; wait4 on our own child pid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall_ms = start.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(pid > 0, "wait4: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    Ok(Sample {
        wall_ms,
        cpu_ms: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
        stdout,
    })
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
