//! `preflight gate`'s command line: the kernel-upgrade gate (crate::gate) for the user's target.
use std::path::PathBuf;

use clap::Args;

use super::TargetFlags;
use crate::gate::{GateOptions, qemu::Machine};

#[derive(Debug, Args)]
pub struct GateArgs {
    /// A kernel to boot, oldest first (at least two; each is compared with the next): a Debian
    /// package (`linux-image-6.1.0-57-cloud-amd64`), release (`6.1.0-57-cloud-amd64`) or line
    /// (`6.1`, `6.12`: the newest cloud kernel), a `.deb` file, a kernel tree (`boot/vmlinuz-R`
    /// and `lib/modules/R`) or a `vmlinuz-R` file with its modules in the usual place.
    #[arg(
        long = "kernel",
        value_name = "PKG|DEB|DIR|VMLINUZ",
        required = true,
        num_args = 1
    )]
    pub kernels: Vec<String>,
    #[command(flatten)]
    pub target: TargetFlags,
    /// Skip the attach canaries in the guests.
    #[arg(long)]
    pub no_canaries: bool,
    /// Give up on a guest after this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub timeout: u64,
    /// Where each kernel's report (`<release>/run.json`), console log and the diffs go.
    #[arg(long, default_value = "preflight-gate", value_name = "DIR")]
    pub results: PathBuf,
    /// The static preflight to put in the guests (default: this one, if it is static).
    #[arg(long, value_name = "FILE")]
    pub guest_binary: Option<PathBuf>,
    /// Kernel package cache (default $PREFLIGHT_VM_CACHE, $XDG_CACHE_HOME/preflight-vm or
    /// ~/.cache/preflight-vm).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// The guests' architecture (default: this machine's). Another architecture boots under
    /// qemu's TCG emulation and needs --guest-binary of that architecture.
    #[arg(long, value_enum, value_name = "ARCH", default_value_t = Machine::host())]
    pub arch: Machine,
}

impl GateArgs {
    pub fn options(&self) -> GateOptions {
        GateOptions {
            kernels: self.kernels.clone(),
            target: self.target.spec(),
            no_canaries: self.no_canaries,
            timeout: self.timeout,
            results: self.results.clone(),
            guest_binary: self.guest_binary.clone(),
            cache: self.cache.clone(),
            machine: self.arch,
        }
    }
}

pub fn gate(args: &GateArgs) -> anyhow::Result<u8> {
    let (code, text) = crate::gate::gate(&args.options())?;
    crate::out!("{text}");
    Ok(code)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        gate: GateArgs,
    }

    #[test]
    fn the_guests_command_line_is_one_preflight_run_accepts() {
        let args = Cli::try_parse_from([
            "gate",
            "--kernel",
            "6.1",
            "--kernel",
            "6.12",
            "--cilium-version",
            "1.16.4",
            "-f",
            "fixtures/values/homelab.yaml",
            "--set",
            "a='b c'",
            "--need",
            "netkit",
            "--no-canaries",
        ])
        .unwrap()
        .gate;
        let (words, _) = crate::gate::guest_run_args(&args.options()).unwrap();
        assert!(
            words
                .windows(2)
                .any(|w| w == ["--cilium-version", "1.16.4"])
        );
        let run = super::super::Cli::try_parse_from(&words);
        assert!(run.is_ok(), "{:?}", run.err());
    }
}
