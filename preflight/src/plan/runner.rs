//! The one way preflight runs external programs (helm, kubectl, systemctl, ip, mount, sysctl,
//! modprobe, firewall-cmd, iptables-save/iptables/iptables-restore): argument vectors, never shell strings; a timeout on every call;
//! each tool found on PATH unless overridden by a flag or `PREFLIGHT_<TOOL>`.
//!
//! These are the boundary to what cannot run on a development machine (a live Kubernetes API,
//! k3s under systemd): tests put scripted stand-ins first on PATH and assert the exact argv.
use std::{
    collections::BTreeMap,
    ffi::OsStr,
    fmt,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::Duration,
};

use anyhow::{Context, bail};
use wait_timeout::ChildExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tool {
    Helm,
    Kubectl,
    Systemctl,
    Ip,
    Mount,
    Sysctl,
    Modprobe,
    FirewallCmd,
    /// OpenRC's service command (Alpine, Rancher Desktop's VM: no systemd).
    RcService,
    /// flannel's leftover chains: read, removed, and put back by rollback.
    IptablesSave,
    Iptables,
    IptablesRestore,
}

impl Tool {
    pub const ALL: [Tool; 12] = [
        Tool::Helm,
        Tool::Kubectl,
        Tool::Systemctl,
        Tool::Ip,
        Tool::Mount,
        Tool::Sysctl,
        Tool::Modprobe,
        Tool::FirewallCmd,
        Tool::RcService,
        Tool::IptablesSave,
        Tool::Iptables,
        Tool::IptablesRestore,
    ];
    /// The program name looked up on PATH.
    pub fn program(self) -> &'static str {
        match self {
            Tool::Helm => "helm",
            Tool::Kubectl => "kubectl",
            Tool::Systemctl => "systemctl",
            Tool::Ip => "ip",
            Tool::Mount => "mount",
            Tool::Sysctl => "sysctl",
            Tool::Modprobe => "modprobe",
            Tool::FirewallCmd => "firewall-cmd",
            Tool::RcService => "rc-service",
            Tool::IptablesSave => "iptables-save",
            Tool::Iptables => "iptables",
            Tool::IptablesRestore => "iptables-restore",
        }
    }
    /// The environment variable that overrides the path, e.g. `PREFLIGHT_HELM`.
    pub fn env_var(self) -> String {
        format!(
            "PREFLIGHT_{}",
            self.program().to_uppercase().replace('-', "_")
        )
    }
}

/// What a finished command returned.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: Option<i32>,
    /// The signal that killed it, when it did not exit.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// "exited with status 1", "killed by signal 9".
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "ended without an exit status".into(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A command line, for logs and plan output: each argument quoted only when it needs it.
pub struct Argv<'a>(pub &'a Path, pub &'a [String]);

impl fmt::Display for Argv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = |s: &str| {
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
            {
                s.to_string()
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        };
        write!(f, "{}", quote(&self.0.display().to_string()))?;
        for a in self.1 {
            write!(f, " {}", quote(a))?;
        }
        Ok(())
    }
}

pub struct Runner {
    paths: BTreeMap<Tool, PathBuf>,
    timeout: Duration,
    /// Every command run, with its exit code: the evidence printed when something fails.
    transcript: Mutex<Vec<String>>,
}

impl Runner {
    /// Resolve every tool: explicit override, then `PREFLIGHT_<TOOL>`, then PATH. A tool that is
    /// not found is only an error when it is run.
    pub fn new(overrides: &BTreeMap<Tool, PathBuf>, timeout: Duration) -> Self {
        let mut paths = BTreeMap::new();
        for tool in Tool::ALL {
            let path = overrides
                .get(&tool)
                .cloned()
                .or_else(|| std::env::var_os(tool.env_var()).map(PathBuf::from))
                .or_else(|| find_on_path(tool.program()));
            if let Some(p) = path {
                paths.insert(tool, p);
            }
        }
        Self {
            paths,
            timeout,
            transcript: Mutex::new(Vec::new()),
        }
    }

    pub fn path(&self, tool: Tool) -> anyhow::Result<&Path> {
        self.paths
            .get(&tool)
            .map(PathBuf::as_path)
            .with_context(|| {
                format!(
                    "{} not found on PATH (give its path with --{} or {})",
                    tool.program(),
                    tool.program(),
                    tool.env_var()
                )
            })
    }

    /// How long any one command may run before it is killed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Why `tool` cannot be run: not found, or the path given is not an executable file.
    pub fn unavailable(&self, tool: Tool) -> Option<String> {
        match self.path(tool) {
            Err(e) => Some(format!("{e:#}")),
            Ok(p) if !is_executable(p) => Some(format!(
                "{}: {} is not an executable file (from --{} or {})",
                tool.program(),
                p.display(),
                tool.program(),
                tool.env_var()
            )),
            Ok(_) => None,
        }
    }

    /// The command line as it would run, for the printed plan.
    pub fn display(&self, tool: Tool, args: &[String]) -> String {
        let program = self
            .paths
            .get(&tool)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(tool.program()));
        Argv(&program, args).to_string()
    }

    /// Run and return the output whatever the exit code; Err only when it could not run or
    /// timed out.
    pub fn run(&self, tool: Tool, args: &[String]) -> anyhow::Result<Output> {
        let program = self.path(tool)?.to_path_buf();
        let line = Argv(&program, args).to_string();
        tracing::info!("running {line}");
        let result = run_with_timeout(&program, args, self.timeout);
        let note = match &result {
            Ok(o) => format!("{line}  → {}", o.describe()),
            Err(e) => format!("{line}  → {e:#}"),
        };
        if let Ok(mut t) = self.transcript.lock() {
            t.push(note);
        }
        result.with_context(|| format!("running {line}"))
    }

    /// Run and fail unless it exits 0, with its stderr in the error.
    pub fn check(&self, tool: Tool, args: &[String]) -> anyhow::Result<Output> {
        let out = self.run(tool, args)?;
        if !out.success() {
            bail!(
                "{} {}: {}",
                self.display(tool, args),
                out.describe(),
                out.stderr.trim()
            );
        }
        Ok(out)
    }

    pub fn transcript(&self) -> Vec<String> {
        self.transcript
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn run_with_timeout(program: &Path, args: &[String], timeout: Duration) -> anyhow::Result<Output> {
    let mut child = Command::new(program)
        .args(args.iter().map(OsStr::new))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    // Read both pipes on threads so a chatty command cannot block on a full pipe.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let status = match child.wait_timeout(timeout)? {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {} s and was killed", timeout.as_secs());
        }
    };
    Ok(Output {
        code: status.code(),
        signal: std::os::unix::process::ExitStatusExt::signal(&status),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_argv_without_a_shell_and_times_out() {
        let mut o = BTreeMap::new();
        o.insert(Tool::Ip, PathBuf::from("/bin/echo"));
        o.insert(Tool::Helm, PathBuf::from("/bin/sleep"));
        let r = Runner::new(&o, Duration::from_millis(300));
        // A shell would expand these; echo prints them as they are.
        let out = r.check(Tool::Ip, &["$(id)".into(), "a b".into()]).unwrap();
        assert_eq!(out.stdout, "$(id) a b\n");
        let e = r.run(Tool::Helm, &["5".into()]).unwrap_err();
        assert!(format!("{e:#}").contains("timed out"), "{e:#}");
        assert_eq!(r.transcript().len(), 2);
        assert_eq!(
            r.display(Tool::Ip, &["a b".into(), "x".into()]),
            "/bin/echo 'a b' x"
        );
    }
}
