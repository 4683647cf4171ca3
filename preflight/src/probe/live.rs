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
        match aya::Btf::from_sys_fs() {
            Ok(_) => Ok(true),
            Err(e) if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() => {
                let _ = e;
                Ok(false)
            }
            Err(e) => Err(error_chain(&e)),
        }
    }
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
