//! The janitor: a detached process (own session, host namespaces) that waits for the canary
//! worker to exit, however it exits, then removes the worker's scratch cgroup directory.
use std::{
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

/// Starts a janitor for `dir`, watching the current process.
pub fn spawn(dir: &Path) -> std::io::Result<()> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("__canary-janitor")
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; a new session keeps the janitor out of the worker's
    // process group, so killing the group does not take the janitor with it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().map(|_| ())
}

/// `preflight __canary-janitor PID DIR`
pub fn janitor_main(pid: i32, dir: &Path) -> std::process::ExitCode {
    wait_for_exit(pid);
    // The worker may have been inside the cgroup when it died; the kernel empties it shortly
    // after the process is reaped, so retry EBUSY for a moment.
    for _ in 0..200 {
        match std::fs::remove_dir(dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    std::process::ExitCode::SUCCESS
}

fn wait_for_exit(pid: i32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd >= 0 {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a pidfd becomes readable when the process exits.
        unsafe {
            while libc::poll(&mut pfd, 1, -1) < 0 {}
            libc::close(fd);
        }
        return;
    }
    // Kernels before 5.3: poll for the pid to disappear.
    // SAFETY: kill with signal 0 only checks for existence.
    while unsafe { libc::kill(pid, 0) } == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
}
