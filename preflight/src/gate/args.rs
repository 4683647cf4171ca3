//! `preflight gate`'s command line, kept apart from the gate's machinery so the cmd/ layer can
//! take it over as it is.
use std::path::PathBuf;

use clap::Args;

use crate::cli::TargetFlags;

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
}
