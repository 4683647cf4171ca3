//! The real kernel behind [`Kernel`]: aya's probes for program, map and helper support (they
//! read both verifier wordings, pre- and post-6.10), our raw loader for the misc probes.
use aya::{maps::MapType, programs::ProgramType, sys::BpfHelper};

use super::{Kernel, Load, sys};

pub struct LiveKernel;

/// CAP_SYS_ADMIN and CAP_BPF (capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Whether this process may ask the kernel with bpf(): it holds CAP_BPF or CAP_SYS_ADMIN
/// (effective set, /proc/self/status). Without them the kernel refuses before it looks at what
/// was asked, or (a local-storage map's size check) answers in a way that proves nothing for
/// the caller: every bpf() answer is then "could not tell", never "available".
pub fn bpf_privilege() -> Result<(), String> {
    static ANSWER: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ANSWER
        .get_or_init(|| {
            let status = crate::host::HostRoot::new("/")
                .read_text("/proc/self/status")
                .map_err(|e| format!("could not read our capabilities: {e}"))?;
            let eff = status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .ok_or("could not read our capabilities: no CapEff in /proc/self/status")?;
            if eff & (1 << CAP_BPF) != 0 || eff & (1 << CAP_SYS_ADMIN) != 0 {
                Ok(())
            } else {
                Err(
                    "not privileged: this process has neither CAP_BPF nor CAP_SYS_ADMIN, so \
                     bpf() was not asked (run as root)"
                        .to_string(),
                )
            }
        })
        .clone()
}

impl Kernel for LiveKernel {
    fn program(&self, program_type: ProgramType) -> Result<bool, String> {
        bpf_privilege()?;
        match program_type {
            ProgramType::Tracing => btf_target_type(sys::BPF_PROG_TYPE_TRACING, "tracing"),
            ProgramType::Lsm(_) => btf_target_type(sys::BPF_PROG_TYPE_LSM, "lsm"),
            ProgramType::Extension => btf_target_type(sys::BPF_PROG_TYPE_EXT, "ext"),
            _ => aya::sys::is_program_supported(program_type).map_err(|e| error_chain(&e)),
        }
    }
    fn map(&self, map_type: MapType) -> Result<bool, String> {
        bpf_privilege()?;
        match map_type {
            MapType::SkStorage
            | MapType::InodeStorage
            | MapType::TaskStorage
            | MapType::CgrpStorage => {
                sys::local_storage_map_known(map_type as u32).map_err(|errno| {
                    format!(
                        "bpf_map_create: {}",
                        std::io::Error::from_raw_os_error(errno)
                    )
                })
            }
            _ => aya::sys::is_map_supported(map_type).map_err(|e| error_chain(&e)),
        }
    }
    fn helper(&self, program_type: ProgramType, helper: BpfHelper) -> Result<bool, String> {
        bpf_privilege()?;
        aya::sys::is_helper_supported(program_type, helper).map_err(|e| error_chain(&e))
    }
    fn load(&self, program_type: u32, expected_attach_type: u32, insns: &[sys::Insn]) -> Load {
        sys::load(program_type, expected_attach_type, insns)
    }
    fn vmlinux_btf(&self) -> Result<bool, String> {
        vmlinux_btf_header(std::path::Path::new("/sys/kernel/btf/vmlinux"))
    }
    fn kernel_config(&self) -> crate::host::kconfig::KernelConfigFact {
        // The same search `run` makes for its kernel checks, on this system's root.
        let host = crate::host::HostRoot::new("/");
        crate::host::kconfig::gather(&host, host.kernel_release().as_deref())
    }
}

/// Program types that attach to a BTF function (tracing, lsm, ext). aya looks the target up in
/// vmlinux BTF, which parses all of it (~20 MB and tens of ms, for each type); we load without
/// a target instead: a kernel that knows the type answers "must provide btf_id" from the
/// verifier, one that does not rejects it with an empty log (as cilium/ebpf's features package
/// does). Unlike aya we do not try a trampoline attach (only arm64 before 6.4 lacks one).
fn btf_target_type(number: u32, name: &str) -> Result<bool, String> {
    let insns = [sys::Insn::mov64_imm(0, 0), sys::Insn::exit()];
    match sys::load(number, super::catalog::expected_attach_type(name), &insns) {
        Load::Loaded { .. } => Ok(true),
        Load::Rejected {
            errno: libc::EINVAL,
            log,
        } if log.contains("btf_id") => Ok(true),
        Load::Rejected {
            errno: libc::EINVAL | libc::E2BIG,
            log,
        } if log.trim().is_empty() => Ok(false),
        Load::Rejected { errno, log } => Err(format!(
            "`bpf_prog_load` failed: {}{}",
            std::io::Error::from_raw_os_error(errno),
            log.lines()
                .last()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default()
        )),
    }
}

/// Reads only the BTF header (magic 0xeb9f): parsing all of vmlinux BTF costs tens of ms and
/// tells nothing more about whether it is there.
fn vmlinux_btf_header(path: &std::path::Path) -> Result<bool, String> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut magic = [0u8; 2];
    file.read_exact(&mut magic)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(u16::from_le_bytes(magic) == 0xeb9f)
}

/// "bpf_prog_load failed: Operation not permitted (os error 1)", with every source in the chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}
