//! A loader for Cilium's real datapath objects (and our templates), into this kernel's
//! verifier, without attaching anything. See docs/compile.md, "The loader".
//!
//! Why our own: libbpf ≥ 1.0 refuses the legacy `maps` section Cilium ≤ 1.17 still uses,
//! aya-obj refuses its `2/1` tail-call section names, and neither knows Cilium's
//! conventions (tail-call slots, `CILIUM_PIN_REPLACE`, load-time configuration). The facts
//! come from cilium/ebpf (the loader the agent uses: `elf_reader.go`, `elf_sections.go`) and
//! the agent's own loader (pkg/bpf/collection.go, pkg/datapath/loader, pkg/datapath/config).
//!
//! ```no_run
//! use preflight::compile::elf::{LoadOptions, load_object};
//! let mut opts = LoadOptions::default();
//! opts.config.insert("interface_ifindex".into(), 2u32.to_le_bytes().to_vec());
//! opts.map_renames.insert("cilium_calls".into(), "cilium_calls_00042".into());
//! let verdict = load_object("bpf_lxc.o".as_ref(), &opts);
//! for p in &verdict.programs {
//!     println!("{} {:?} {:?}", p.name, p.verdict, p.verified_insns);
//! }
//! ```
//!
//! Layers: [`parse`] (ELF → functions, programs, maps; with [`sections`] and [`btf`]) →
//! [`relocate`] (link one program) → [`load`] (maps, programs, tail calls; [`sys`] is the
//! bpf() syscall) inside [`bpffs`] (a private mount namespace with a scratch bpffs) →
//! [`verdict`] (the result model). [`inspect`] only reads an object.
pub mod bpffs;
pub mod btf;
pub mod insn;
pub mod inspect;
pub mod load;
pub mod parse;
pub mod relocate;
pub mod sections;
pub mod sys;
pub mod verdict;

use std::{collections::BTreeMap, path::Path, sync::Arc};

pub use inspect::{ObjectInfo, ObjectProgram, inspect};
pub use verdict::{ObjectVerdict, ProgramVerdict, TailCall, Verdict};

/// How to load an object: what the agent decides per endpoint or device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Load-time configuration (`DECLARE_CONFIG` / `CONFIG()`, in `.rodata.config`): variable
    /// name, with or without the `__config_` prefix (`interface_ifindex`, `LXC_ID`) → its
    /// value in the object's byte order (little-endian), at most the variable's size (shorter
    /// is zero-extended). Variables not given keep the object's defaults, as the agent's
    /// generated `New*()` constructors do (pkg/datapath/config).
    pub config: BTreeMap<String, Vec<u8>>,
    /// Map name in the object → the name it is pinned and reported under (the agent's
    /// `MapRenames`: `cilium_calls` → `cilium_calls_<endpoint id>`, 1.18+). Up to 1.17 the
    /// name comes from `-DCALLS_MAP=…` at compile time and is already in the object.
    pub map_renames: BTreeMap<String, String>,
    /// Directory inside the scratch bpffs for by-name pins (the agent's `tc/globals`).
    pub pin_dir: String,
    /// Verifier log lines kept for a rejection.
    pub log_lines: usize,
    /// First size of the verifier log buffer for a rejected program (grown on older kernels
    /// that keep the start of a log that does not fit).
    pub verbose_log_bytes: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            config: BTreeMap::new(),
            map_renames: BTreeMap::new(),
            pin_dir: "tc/globals".into(),
            log_lines: 12,
            verbose_log_bytes: 16 << 20,
        }
    }
}

/// A loader with one scratch bpffs shared by every object it loads, as the node's
/// `/sys/fs/bpf` is shared: maps pinned by name by one object (`cilium_ipcache`, …) are
/// reused by the next. Dropping it unmounts the bpffs with every pin.
pub struct Loader {
    scratch: bpffs::Scratch,
}

impl Loader {
    pub fn new() -> Self {
        Self {
            scratch: bpffs::Scratch::new(),
        }
    }

    /// Why pinning is off, if it is.
    pub fn pinning_off(&self) -> Option<&str> {
        self.scratch.pins().why_not.as_deref()
    }

    pub fn load(&self, bytes: &[u8], opts: &LoadOptions) -> ObjectVerdict {
        let bytes: Arc<[u8]> = bytes.into();
        let opts = opts.clone();
        self.scratch
            .run(move |pins| load::load(&bytes, &opts, pins))
            .unwrap_or_else(|e| ObjectVerdict::failed(format!("loader failed: {e}")))
    }

    pub fn load_file(&self, path: &Path, opts: &LoadOptions) -> ObjectVerdict {
        match read_object(path) {
            Ok(bytes) => self.load(&bytes, opts),
            Err(e) => ObjectVerdict::failed(e),
        }
    }
}

impl Default for Loader {
    fn default() -> Self {
        Self::new()
    }
}

/// Objects larger than this are refused unread (Cilium's largest are a few MiB).
pub const MAX_OBJECT_BYTES: u64 = 256 << 20;

/// Reads an object file, bounded, refusing what is not a regular file (a FIFO, a device).
pub fn read_object(path: &Path) -> Result<Vec<u8>, String> {
    use std::{io::Read, os::unix::fs::OpenOptionsExt};
    // Non-blocking, so a FIFO does not hang the open; only regular files are read.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_OBJECT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_OBJECT_BYTES {
        return Err(format!(
            "{}: larger than {} MiB, not a BPF object",
            path.display(),
            MAX_OBJECT_BYTES >> 20
        ));
    }
    Ok(bytes)
}

/// Loads one object file into the kernel's verifier in its own scratch bpffs. Needs root
/// (CAP_BPF, and CAP_SYS_ADMIN for the private bpffs); without, the verdict says "unknown".
pub fn load_object(path: &Path, opts: &LoadOptions) -> ObjectVerdict {
    Loader::new().load_file(path, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_inputs_are_errors_naming_the_file() {
        let v = load_object(Path::new("/nonexistent/bpf_lxc.o"), &LoadOptions::default());
        assert!(v.object_error.unwrap().contains("/nonexistent/bpf_lxc.o"));
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.o");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(
            read_object(&fifo)
                .unwrap_err()
                .contains("not a regular file")
        );
        let garbage = dir.path().join("garbage.o");
        std::fs::write(&garbage, b"\x7fELF but not really").unwrap();
        let v = load_object(&garbage, &LoadOptions::default());
        assert!(v.object_error.unwrap().contains("not an ELF object"));
        assert!(v.programs.is_empty());
    }
}
