//! The real kernel behind [`Kernel`]: aya's probes for program, map and helper support (they
//! read both verifier wordings, pre- and post-6.10), our raw loader for the misc probes.
use aya::{maps::MapType, programs::ProgramType, sys::BpfHelper};

use super::{Kernel, Load, sys};

pub struct LiveKernel;

impl Kernel for LiveKernel {
    fn program(&self, program_type: ProgramType) -> Result<bool, String> {
        aya::sys::is_program_supported(program_type).map_err(|e| error_chain(&e))
    }
    fn map(&self, map_type: MapType) -> Result<bool, String> {
        aya::sys::is_map_supported(map_type).map_err(|e| error_chain(&e))
    }
    fn helper(&self, program_type: ProgramType, helper: BpfHelper) -> Result<bool, String> {
        aya::sys::is_helper_supported(program_type, helper).map_err(|e| error_chain(&e))
    }
    fn load(&self, program_type: u32, insns: &[sys::Insn]) -> Load {
        sys::load(program_type, insns)
    }
    fn vmlinux_btf(&self) -> Result<bool, String> {
        vmlinux_btf_header(std::path::Path::new("/sys/kernel/btf/vmlinux"))
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
