//! Boots a kernel + initramfs in qemu and splits the serial console into the sections /init
//! marked. TCG unless KVM is known to work: where /dev/kvm is kvm_pvm (a nested-virtualisation
//! module of some cloud machines) its guests die with "KVM internal error. Suberror: 1", and
//! `-accel kvm -accel tcg` would pick the broken KVM, so the accelerator is chosen before
//! launch, never by fallback.
use std::{
    collections::BTreeMap,
    ffi::OsString,
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::Context;

/// Marker lines on the serial console ([`super::initramfs`]'s /init prints them).
pub const BEGIN: &str = "@@preflight-begin ";
pub const END: &str = "@@preflight-end ";

/// The machine qemu emulates: the guest kernel's architecture, named as Debian and Docker name
/// it (`--arch amd64|arm64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Machine {
    #[value(name = "amd64")]
    X86_64,
    #[value(name = "arm64")]
    Aarch64,
}

impl Machine {
    /// This host's architecture, the one a gate boots by default.
    pub fn host() -> Self {
        if cfg!(target_arch = "aarch64") {
            Self::Aarch64
        } else {
            Self::X86_64
        }
    }
    /// Debian's architecture name: the suffix of its kernel packages (`-cloud-arm64`) and
    /// .deb files (`_arm64.deb`).
    pub fn debian_arch(self) -> &'static str {
        match self {
            Self::X86_64 => "amd64",
            Self::Aarch64 => "arm64",
        }
    }
    /// `uname -m` in the guest.
    pub fn uname(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Aarch64 => "aarch64",
        }
    }
    /// ELF `e_machine` of a program that runs in this guest: EM_X86_64, EM_AARCH64.
    pub fn elf_machine(self) -> u16 {
        match self {
            Self::X86_64 => object::elf::EM_X86_64,
            Self::Aarch64 => object::elf::EM_AARCH64,
        }
    }
    fn qemu(self) -> &'static str {
        match self {
            Self::X86_64 => "qemu-system-x86_64",
            Self::Aarch64 => "qemu-system-aarch64",
        }
    }
    fn package(self) -> &'static str {
        match self {
            Self::X86_64 => "qemu-system-x86",
            Self::Aarch64 => "qemu-system-arm",
        }
    }
    /// Machine-specific flags. arm64: the generic `virt` board, whose PL011 UART Debian's
    /// arm64 kernels drive built in (CONFIG_SERIAL_AMBA_PL011=y) and whose PSCI lets
    /// `poweroff -f` end qemu. The guest needs no virtio device: everything is in the
    /// initramfs and the reports leave over the serial line.
    fn board(self) -> &'static [&'static str] {
        match self {
            Self::X86_64 => &[],
            Self::Aarch64 => &["-M", "virt"],
        }
    }
    /// The serial console's name in the guest: the 8250 UART on x86, the PL011 on `virt`.
    pub fn console(self) -> &'static str {
        match self {
            Self::X86_64 => "ttyS0",
            Self::Aarch64 => "ttyAMA0",
        }
    }
    /// `-cpu`: the host's under KVM; under TCG every feature qemu emulates (`max`). On arm64
    /// `max` includes pointer authentication with the architected QARMA algorithm, which TCG
    /// computes slowly on every signed return; `pauth-impdef=on` keeps the feature with qemu's
    /// cheap implementation-defined algorithm (qemu docs/system/arm/cpu-features.rst). Measured
    /// here: Debian 6.1 arm64 to /init in 3.4 s instead of 20 s.
    fn cpu(self, accel: &str) -> &'static str {
        match (self, accel) {
            (_, "kvm") => "host",
            (Self::X86_64, _) => "max",
            (Self::Aarch64, _) => "max,pauth-impdef=on",
        }
    }
}

/// Which accelerator to use for `machine` and why.
pub fn accelerator(machine: Machine) -> (&'static str, String) {
    if machine != Machine::host() {
        return (
            "tcg",
            "another architecture than this machine's: TCG".to_string(),
        );
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        return (
            "tcg",
            "kvm_pvm loaded: its guests crash, using TCG".to_string(),
        );
    }
    if std::env::var_os("PREFLIGHT_VM_KVM").is_some() && Path::new("/dev/kvm").exists() {
        return (
            "kvm",
            "PREFLIGHT_VM_KVM set and /dev/kvm present".to_string(),
        );
    }
    (
        "tcg",
        "TCG by default (set PREFLIGHT_VM_KVM=1 to use a working /dev/kvm)".to_string(),
    )
}

#[derive(Debug, Default)]
pub struct Boot {
    /// Section name → (its output, the command's exit code).
    pub sections: BTreeMap<String, (String, i32)>,
    /// The whole console, for the results directory.
    pub console: String,
    /// /init reached its end (rather than a panic or the timeout).
    pub completed: bool,
    pub timed_out: bool,
    pub elapsed: Duration,
}

/// qemu's arguments for one guest: no devices but the serial console (stdio), no reboot, so
/// that the guest's `poweroff -f` (or a panic) ends qemu.
pub fn command_line(machine: Machine, vmlinuz: &Path, initrd: &Path, accel: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = machine.board().iter().map(OsString::from).collect();
    let words = [
        "-accel",
        accel,
        "-cpu",
        machine.cpu(accel),
        "-m",
        "512",
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ];
    args.extend(words.map(OsString::from));
    args.extend([
        "-kernel".into(),
        vmlinuz.as_os_str().to_owned(),
        "-initrd".into(),
        initrd.as_os_str().to_owned(),
        "-append".into(),
        format!("console={} panic=-1 quiet", machine.console()).into(),
    ]);
    args
}

pub fn boot(
    machine: Machine,
    vmlinuz: &Path,
    initrd: &Path,
    accel: &str,
    timeout: Duration,
) -> anyhow::Result<Boot> {
    let start = Instant::now();
    let mut child = Command::new(machine.qemu())
        .args(command_line(machine, vmlinuz, initrd, accel))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!(
                "running {} (apt-get install {})",
                machine.qemu(),
                machine.package()
            )
        })?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            if tx
                .send(String::from_utf8_lossy(&line).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
    let mut console = String::new();
    let mut timed_out = false;
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                console.push_str(line.trim_end_matches('\r'));
                console.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                let _ = child.kill();
                break;
            }
        }
    }
    let _ = child.wait();
    let _ = reader.join();
    let mut boot = split_sections(&console);
    boot.console = console;
    boot.timed_out = timed_out;
    boot.elapsed = start.elapsed();
    Ok(boot)
}

/// Splits the console at the marker lines. A marker may follow console noise on the same line
/// (a report without a trailing newline), so it is searched for anywhere in the line.
pub fn split_sections(console: &str) -> Boot {
    let mut boot = Boot::default();
    let mut current: Option<(String, String)> = None;
    for line in console.lines() {
        if line.contains("@@preflight-done") {
            boot.completed = true;
        }
        if let Some(at) = line.find(END) {
            if let Some((name, mut body)) = current.take() {
                body.push_str(&line[..at]);
                let rc = line[at + END.len()..]
                    .split_once("rc=")
                    .and_then(|(_, rc)| rc.trim().parse().ok())
                    .unwrap_or(-1);
                boot.sections.insert(name, (body, rc));
            }
        } else if let Some(at) = line.find(BEGIN) {
            current = Some((line[at + BEGIN.len()..].trim().to_string(), String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    boot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_cut_at_the_markers_with_their_exit_codes() {
        let console = "[    0.1] booting\n@@preflight-begin probe\n{\"a\": 1}\n\n@@preflight-end probe rc=0\n\
                       @@preflight-begin run\n{\"go\": false}@@preflight-end run rc=1\n@@preflight-done\n";
        let boot = split_sections(console);
        assert!(boot.completed);
        assert_eq!(boot.sections["probe"], ("{\"a\": 1}\n\n".to_string(), 0));
        assert_eq!(boot.sections["run"], ("{\"go\": false}".to_string(), 1));
    }

    #[test]
    fn each_machine_boots_its_own_board_console_and_cpu() {
        let words = |machine, accel| -> Vec<String> {
            command_line(
                machine,
                Path::new("/k/vmlinuz"),
                Path::new("/k/initrd"),
                accel,
            )
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect()
        };
        let arm = words(Machine::Aarch64, "tcg");
        assert_eq!(arm[..2], ["-M", "virt"]);
        assert!(arm.windows(2).any(|w| w == ["-cpu", "max,pauth-impdef=on"]));
        assert!(arm.windows(2).any(|w| w == ["-accel", "tcg"]));
        assert_eq!(
            arm[arm.len() - 6..],
            [
                "-kernel",
                "/k/vmlinuz",
                "-initrd",
                "/k/initrd",
                "-append",
                "console=ttyAMA0 panic=-1 quiet"
            ]
        );
        let x86 = words(Machine::X86_64, "tcg");
        assert_eq!(x86[0], "-accel", "the pc board is qemu's default");
        assert!(x86.windows(2).any(|w| w == ["-cpu", "max"]));
        assert_eq!(x86.last().unwrap(), "console=ttyS0 panic=-1 quiet");
        assert!(
            words(Machine::X86_64, "kvm")
                .windows(2)
                .any(|w| w == ["-cpu", "host"])
        );
        assert_eq!(Machine::Aarch64.debian_arch(), "arm64");
        assert_eq!(Machine::Aarch64.elf_machine(), 183);
        assert_eq!(Machine::X86_64.elf_machine(), 62);
    }

    #[test]
    fn another_architecture_is_never_given_kvm() {
        let foreign = match Machine::host() {
            Machine::X86_64 => Machine::Aarch64,
            Machine::Aarch64 => Machine::X86_64,
        };
        assert_eq!(accelerator(foreign).0, "tcg");
    }

    #[test]
    fn an_unterminated_section_is_dropped_and_the_boot_is_incomplete() {
        let boot = split_sections("@@preflight-begin probe\n{\"a\":\nKernel panic\n");
        assert!(!boot.completed);
        assert!(boot.sections.is_empty());
    }
}
