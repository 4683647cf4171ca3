//! The bpf() commands the loader needs, on aya-obj's generated `bpf_attr` (the kernel's
//! uapi layout). Every fd comes back owned, so dropping a value closes it.
use std::{
    ffi::CStr,
    mem,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_map_info, bpf_prog_info};

use super::insn::Insn;

fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> Result<i64, i32> {
    // SAFETY: attr is a fully initialised bpf_attr that outlives the call; pointers in it point
    // to buffers the caller keeps alive for the call.
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

fn fd_from(ret: i64) -> OwnedFd {
    // SAFETY: the kernel returned a new fd that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(ret as i32) }
}

fn zeroed() -> bpf_attr {
    // SAFETY: all-zero is a valid bpf_attr (plain integers and unions of them).
    unsafe { mem::zeroed() }
}

/// A kernel object name: at most 15 bytes of `[A-Za-z0-9_.]` (the kernel refuses others).
fn object_name(name: &str) -> [libc::c_char; 16] {
    let mut out = [0 as libc::c_char; 16];
    for (o, b) in out
        .iter_mut()
        .zip(
            name.bytes()
                .filter(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.'),
        )
        .take(15)
    {
        *o = b as libc::c_char;
    }
    out
}

/// BPF_BTF_LOAD; on failure the errno and, when asked, the kernel's BTF log.
pub fn btf_load(btf: &[u8], with_log: bool) -> Result<OwnedFd, (i32, String)> {
    let mut log = vec![0u8; if with_log { 1 << 20 } else { 0 }];
    let mut attr = zeroed();
    // SAFETY: writing plain fields of the BTF_LOAD member.
    let u = unsafe { &mut attr.__bindgen_anon_7 };
    u.btf = btf.as_ptr() as u64;
    u.btf_size = btf.len() as u32;
    if with_log {
        u.btf_log_buf = log.as_mut_ptr() as u64;
        u.btf_log_size = log.len() as u32;
        u.btf_log_level = 1;
    }
    sys_bpf(bpf_cmd::BPF_BTF_LOAD, &mut attr)
        .map(fd_from)
        .map_err(|e| (e, c_string(&log)))
}

pub struct MapCreate<'a> {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    pub numa_node: u32,
    pub map_extra: u64,
    pub inner: Option<BorrowedFd<'a>>,
    pub name: &'a str,
}

pub fn map_create(m: &MapCreate) -> Result<OwnedFd, i32> {
    let mut attr = zeroed();
    // SAFETY: writing plain fields of the MAP_CREATE member.
    let u = unsafe { &mut attr.__bindgen_anon_1 };
    u.map_type = m.map_type;
    u.key_size = m.key_size;
    u.value_size = m.value_size;
    u.max_entries = m.max_entries;
    u.map_flags = m.flags;
    u.numa_node = m.numa_node;
    u.map_extra = m.map_extra;
    u.inner_map_fd = m.inner.map(|f| f.as_raw_fd() as u32).unwrap_or(0);
    u.map_name = object_name(m.name);
    sys_bpf(bpf_cmd::BPF_MAP_CREATE, &mut attr).map(fd_from)
}

pub fn map_update(map: BorrowedFd, key: &[u8], value: &[u8]) -> Result<(), i32> {
    let mut attr = zeroed();
    // SAFETY: writing plain fields of the MAP_*_ELEM member; key and value outlive the call.
    let u = unsafe { &mut attr.__bindgen_anon_2 };
    u.map_fd = map.as_raw_fd() as u32;
    u.key = key.as_ptr() as u64;
    u.__bindgen_anon_1.value = value.as_ptr() as u64;
    sys_bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// Makes a map read-only for user space (what the loader does to `.rodata` once filled).
pub fn map_freeze(map: BorrowedFd) -> Result<(), i32> {
    let mut attr = zeroed();
    // MAP_FREEZE reads only map_fd (writing a union field is safe).
    attr.__bindgen_anon_2.map_fd = map.as_raw_fd() as u32;
    sys_bpf(bpf_cmd::BPF_MAP_FREEZE, &mut attr).map(|_| ())
}

pub fn obj_pin(fd: BorrowedFd, path: &CStr) -> Result<(), i32> {
    let mut attr = zeroed();
    // SAFETY: writing plain fields of the OBJ_PIN member; path outlives the call.
    let u = unsafe { &mut attr.__bindgen_anon_4 };
    u.pathname = path.as_ptr() as u64;
    u.bpf_fd = fd.as_raw_fd() as u32;
    sys_bpf(bpf_cmd::BPF_OBJ_PIN, &mut attr).map(|_| ())
}

pub fn obj_get(path: &CStr) -> Result<OwnedFd, i32> {
    let mut attr = zeroed();
    // SAFETY: writing plain fields of the OBJ_GET member; path outlives the call.
    let u = unsafe { &mut attr.__bindgen_anon_4 };
    u.pathname = path.as_ptr() as u64;
    sys_bpf(bpf_cmd::BPF_OBJ_GET, &mut attr).map(fd_from)
}

fn info<T>(fd: BorrowedFd) -> Result<T, i32> {
    // SAFETY: the info structs are plain integers; all-zero is valid.
    let mut info: T = unsafe { mem::zeroed() };
    let mut attr = zeroed();
    // SAFETY: writing plain fields of the OBJ_GET_INFO_BY_FD member; info outlives the call.
    let u = unsafe { &mut attr.info };
    u.bpf_fd = fd.as_raw_fd() as u32;
    u.info_len = mem::size_of::<T>() as u32;
    u.info = &mut info as *mut T as u64;
    sys_bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}

pub fn map_info(fd: BorrowedFd) -> Result<bpf_map_info, i32> {
    info(fd)
}

pub fn prog_info(fd: BorrowedFd) -> Result<bpf_prog_info, i32> {
    info(fd)
}

pub struct ProgLoad<'a> {
    pub prog_type: u32,
    pub expected_attach_type: u32,
    pub name: &'a str,
    pub insns: &'a [Insn],
    pub license: &'a CStr,
    pub btf: Option<BorrowedFd<'a>>,
    /// (instruction index, type id): `struct bpf_func_info`.
    pub func_info: &'a [(u32, u32)],
    pub line_info: &'a [[u32; 4]],
}

/// Verifier log levels: BPF_LOG_LEVEL1 (every instruction), BPF_LOG_STATS (the summary).
pub const LOG_VERBOSE: u32 = 1;
pub const LOG_STATS: u32 = 4;

/// BPF_PROG_LOAD. `log` is (level, buffer). The kernel writes the log even on success; on
/// 6.4+ a too-small buffer keeps the end of the log (where the verdict is).
pub fn prog_load(p: &ProgLoad, log: Option<(u32, &mut [u8])>) -> Result<OwnedFd, i32> {
    let func_info: Vec<u32> = p.func_info.iter().flat_map(|(a, b)| [*a, *b]).collect();
    let line_info: Vec<u32> = p.line_info.iter().flatten().copied().collect();
    let mut attr = zeroed();
    // SAFETY: writing plain fields of the PROG_LOAD member; every buffer outlives the call.
    let u = unsafe { &mut attr.__bindgen_anon_3 };
    u.prog_type = p.prog_type;
    u.expected_attach_type = p.expected_attach_type;
    u.insn_cnt = p.insns.len() as u32;
    u.insns = p.insns.as_ptr() as u64;
    u.license = p.license.as_ptr() as u64;
    u.prog_name = object_name(p.name);
    if let Some(btf) = p.btf
        && !p.func_info.is_empty()
    {
        u.prog_btf_fd = btf.as_raw_fd() as u32;
        u.func_info_rec_size = 8;
        u.func_info = func_info.as_ptr() as u64;
        u.func_info_cnt = p.func_info.len() as u32;
        if !p.line_info.is_empty() {
            u.line_info_rec_size = 16;
            u.line_info = line_info.as_ptr() as u64;
            u.line_info_cnt = p.line_info.len() as u32;
        }
    }
    if let Some((level, buf)) = log {
        u.log_level = level;
        u.log_buf = buf.as_mut_ptr() as u64;
        u.log_size = buf.len() as u32;
    }
    sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr).map(fd_from)
}

/// The text up to the first NUL.
pub fn c_string(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_keep_what_the_kernel_accepts() {
        let n = object_name("cilium_ipcache_v2/x-y");
        let s: String = n
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8 as char)
            .collect();
        assert_eq!(s, "cilium_ipcache_");
        let n = object_name(".rodata.config");
        assert_eq!(
            n[..14].iter().map(|&c| c as u8).collect::<Vec<_>>(),
            b".rodata.config"
        );
        assert_eq!(n[14], 0);
    }
}
