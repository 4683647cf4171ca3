//! The one raw bpf() call preflight makes itself: loading hand-assembled instructions for the
//! misc probes (ISA level, instruction limit, bounded loops), which aya does not expose.
//! Everything else goes through aya.
use std::{
    mem,
    os::fd::{FromRawFd, OwnedFd},
};

use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_insn, bpf_prog_info};

use super::Load;

// Instruction classes and opcodes (include/uapi/linux/bpf_common.h, bpf.h).
pub const BPF_JMP: u8 = 0x05;
pub const BPF_JMP32: u8 = 0x06;
pub const BPF_ALU64: u8 = 0x07;
pub const BPF_K: u8 = 0x00;
pub const BPF_X: u8 = 0x08;
pub const BPF_MOV: u8 = 0xb0;
pub const BPF_SUB: u8 = 0x10;
pub const BPF_JNE: u8 = 0x50;
pub const BPF_JLT: u8 = 0xa0;
pub const BPF_EXIT: u8 = 0x90;
pub const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
pub const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
pub const BPF_PROG_TYPE_TRACING: u32 = 26;
pub const BPF_PROG_TYPE_EXT: u32 = 28;
pub const BPF_PROG_TYPE_LSM: u32 = 29;
/// BPF_MAXINSNS: the pre-5.2 limit on instructions per program.
pub const BPF_MAXINSNS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            dst,
            src,
            off,
            imm,
        }
    }
    pub const fn mov64_imm(dst: u8, imm: i32) -> Self {
        Self::new(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
    }
    pub const fn exit() -> Self {
        Self::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
    }
    fn raw(self) -> bpf_insn {
        let mut insn = unsafe { mem::zeroed::<bpf_insn>() };
        insn.code = self.code;
        insn.set_dst_reg(self.dst);
        insn.set_src_reg(self.src);
        insn.off = self.off;
        insn.imm = self.imm;
        insn
    }
}

fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> Result<i64, i32> {
    // SAFETY: attr is a fully initialised bpf_attr that outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_int,
            attr as *mut bpf_attr,
            mem::size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(ret)
    }
}

/// BPF_PROG_LOAD; on success, asks whether the JIT compiled it. The first attempt runs without a
/// verifier log: a log too small for the program fails the load with ENOSPC (a 4097-instruction
/// program overflows 4 KiB), and logging slows the verifier. Only a rejection is loaded again,
/// with a log, to say why.
pub fn load(program_type: u32, expected_attach_type: u32, insns: &[Insn]) -> Load {
    load_with_flags(program_type, expected_attach_type, 0, insns)
}

/// [`load`] with `prog_flags` (BPF_F_SLEEPABLE: syscall programs must be sleepable).
pub fn load_with_flags(
    program_type: u32,
    expected_attach_type: u32,
    prog_flags: u32,
    insns: &[Insn],
) -> Load {
    let raw: Vec<bpf_insn> = insns.iter().map(|i| i.raw()).collect();
    let load_raw = |log| load_raw(program_type, expected_attach_type, prog_flags, &raw, log);
    match load_raw(None) {
        Ok(fd) => Load::Loaded { jited: jited(&fd) },
        Err(errno) => {
            let mut log = vec![0u8; 64 * 1024];
            let errno = match load_raw(Some(&mut log)) {
                Ok(_) => errno,
                // ENOSPC here is the log, not the program: keep the first answer.
                Err(libc::ENOSPC) => errno,
                Err(e) => e,
            };
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Load::Rejected {
                errno,
                log: String::from_utf8_lossy(&log[..end]).into_owned(),
            }
        }
    }
}

fn load_raw(
    program_type: u32,
    expected_attach_type: u32,
    prog_flags: u32,
    insns: &[bpf_insn],
    log: Option<&mut [u8]>,
) -> Result<OwnedFd, i32> {
    let license = c"GPL";
    // SAFETY: all-zero is a valid bpf_attr; the union member set is the one PROG_LOAD reads.
    let mut attr = unsafe { mem::zeroed::<bpf_attr>() };
    let u = unsafe { &mut attr.__bindgen_anon_3 };
    u.prog_type = program_type;
    u.expected_attach_type = expected_attach_type;
    u.prog_flags = prog_flags;
    u.insn_cnt = insns.len() as u32;
    u.insns = insns.as_ptr() as u64;
    u.license = license.as_ptr() as u64;
    if let Some(log) = log {
        u.log_level = 1;
        u.log_buf = log.as_mut_ptr() as u64;
        u.log_size = log.len() as u32;
    }
    let fd = sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn jited(fd: &OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    let mut info = unsafe { mem::zeroed::<bpf_prog_info>() };
    let mut attr = unsafe { mem::zeroed::<bpf_attr>() };
    let u = unsafe { &mut attr.info };
    u.bpf_fd = fd.as_raw_fd() as u32;
    u.info_len = mem::size_of::<bpf_prog_info>() as u32;
    u.info = &mut info as *mut bpf_prog_info as u64;
    sys_bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr).is_ok() && info.jited_prog_len > 0
}

pub const BPF_CALL: u8 = 0x80;

impl Insn {
    /// `call helper#id`
    pub const fn call(helper_id: i32) -> Self {
        Self::new(BPF_JMP | BPF_CALL, 0, 0, 0, helper_id)
    }
}

/// Local-storage map types (sk/inode/task/cgrp storage) probed without allocating: the kernel's
/// `bpf_local_storage_map_alloc_check()` rejects a value larger than
/// BPF_LOCAL_STORAGE_MAX_VALUE_SIZE with E2BIG before any allocation, while an unknown map type
/// is EINVAL. A real create-then-fail (aya's probe, btf_fd = -1) costs an RCU grace period in
/// the kernel's free path: 30-150 ms per type, measured.
pub fn local_storage_map_known(map_type: u32) -> Result<bool, i32> {
    // SAFETY: all-zero is a valid bpf_attr; we set the MAP_CREATE member.
    let mut attr = unsafe { mem::zeroed::<bpf_attr>() };
    let u = unsafe { &mut attr.__bindgen_anon_1 };
    u.map_type = map_type;
    u.key_size = 4;
    u.value_size = 1 << 24;
    u.max_entries = 0;
    u.map_flags = aya_obj::generated::BPF_F_NO_PREALLOC;
    u.btf_key_type_id = 1;
    u.btf_value_type_id = 1;
    match sys_bpf(bpf_cmd::BPF_MAP_CREATE, &mut attr) {
        Ok(fd) => {
            // SAFETY: unexpected success still hands us an fd to close.
            drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            Ok(true)
        }
        Err(libc::E2BIG) => Ok(true),
        Err(libc::EINVAL) => Ok(false),
        Err(errno) => Err(errno),
    }
}
