//! Loads a parsed object the way cilium-agent's loader does (pkg/datapath/loader,
//! pkg/bpf/collection.go on cilium/ebpf), without attaching anything:
//! 1. load-time configuration set (caller's values over the object's defaults);
//! 2. every program linked; tail calls no entry point reaches are pruned, as the agent prunes;
//! 3. the BTF loaded (sanitised for the running kernel) for function and line info;
//! 4. the maps the remaining programs use created with their flags and inner maps, pinned by
//!    name in the scratch bpffs (an existing compatible pin is reused, as on a node);
//! 5. each program loaded: a first load with only the verifier's statistics, and for a
//!    rejection a second one with the full log, whose last lines say why;
//! 6. program arrays filled from the tail-call slots, and `CILIUM_PIN_REPLACE` maps pinned
//!    only then (the agent's "commit").
//!
//! Program fds close when this returns; pinned maps stay in the scratch bpffs until it goes.
use std::{
    collections::{HashMap, HashSet},
    ffi::CString,
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Instant,
};

use super::{
    LoadOptions,
    bpffs::Pins,
    btf::{self, Features},
    parse::{
        BPF_MAP_TYPE_PERF_EVENT_ARRAY, BPF_MAP_TYPE_PROG_ARRAY, CONFIG_PREFIX, CONFIG_SECTION,
        ConfigStyle, MapDef, MapOrigin, Object,
    },
    relocate::{self, Fixup, Linked},
    sys,
    verdict::{
        ConfigUse, MapVerdict, ObjectVerdict, ProgramVerdict, Pruned, Slot, TailCall,
        UnknownSection, Verdict, log_stats, log_tail,
    },
};

/// `LIBBPF_PIN_BY_NAME` and Cilium's `CILIUM_PIN_REPLACE` (bpf/include/bpf/loader.h).
const PIN_BY_NAME: u32 = 1;
const PIN_REPLACE: u32 = 1 << 4;

fn errno_text(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

/// What this kernel's BTF loader accepts, asked once per process.
fn kernel_btf() -> Features {
    static F: OnceLock<Features> = OnceLock::new();
    *F.get_or_init(|| {
        let ok = |what| sys::btf_load(&btf::probe_blob(what), false).is_ok();
        Features {
            decl_tag: ok("decl_tag"),
            type_tag: ok("type_tag"),
            enum64: ok("enum64"),
            float: ok("float"),
            global_func: ok("func"),
        }
    })
}

fn possible_cpus() -> u32 {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| {
            let last = s.trim().rsplit(['-', ',']).next()?.parse::<u32>().ok()?;
            Some(last + 1)
        })
        .unwrap_or(1)
}

/// The `.rodata.config` contents with the caller's values applied.
fn configure(obj: &Object, opts: &LoadOptions) -> (Vec<u8>, ConfigUse) {
    let mut data = obj
        .maps
        .iter()
        .find(|m| m.name == CONFIG_SECTION)
        .map(|m| m.data.clone())
        .unwrap_or_default();
    let mut used = ConfigUse {
        style: match obj.config_style {
            ConfigStyle::Inline => "inline",
            ConfigStyle::Map => "map",
            ConfigStyle::None => "none",
        }
        .into(),
        ..ConfigUse::default()
    };
    for (name, value) in &opts.config {
        let bare = name.strip_prefix(CONFIG_PREFIX).unwrap_or(name);
        match obj.config_vars.get(bare) {
            None => used.unknown.push(bare.to_string()),
            Some(&(off, size)) => {
                let (off, size) = (off as usize, size as usize);
                if value.len() > size || off + size > data.len() {
                    used.invalid.push(format!(
                        "{bare}: {} bytes for a {size}-byte variable",
                        value.len()
                    ));
                    continue;
                }
                // Shorter values are little-endian numbers: zero-extend.
                data[off..off + size].fill(0);
                data[off..off + value.len()].copy_from_slice(value);
                used.applied.push(bare.to_string());
            }
        }
    }
    (data, used)
}

/// Programs the agent would load: entry points, and the tail calls they reach through
/// `tail_call_static()` (transitively). Unreachable tail calls into the calls map are pruned
/// (pkg/bpf removeUnreachableTailcalls ≤ 1.17, removeUnusedTailcalls 1.18+).
fn reachable(obj: &Object, linked: &[Option<Linked>]) -> Vec<bool> {
    let mut keep: Vec<bool> = obj
        .programs
        .iter()
        .map(|p| !p.tail.as_ref().is_some_and(|t| t.prunable))
        .collect();
    let by_slot: HashMap<(&str, u32), usize> = obj
        .programs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.tail.as_ref().map(|t| ((t.map.as_str(), t.slot), i)))
        .collect();
    let mut work: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
    let mut seen: HashSet<usize> = work.iter().copied().collect();
    while let Some(i) = work.pop() {
        let Some(l) = &linked[i] else { continue };
        for (map, slot) in &l.static_tail_calls {
            if let Some(&t) = by_slot.get(&(obj.maps[*map].name.as_str(), *slot))
                && seen.insert(t)
            {
                keep[t] = true;
                work.push(t);
            }
        }
    }
    keep
}

struct Created {
    fd: OwnedFd,
    /// Pin after the programs are loaded (PIN_REPLACE, or an incompatible pin).
    pin_later: Option<PathBuf>,
}

/// A map the kernel refused: its errno (EPERM is "could not tell") and what was asked.
struct MapError {
    errno: i32,
    text: String,
}

impl From<String> for MapError {
    fn from(text: String) -> Self {
        Self { errno: 0, text }
    }
}

fn create_map(def: &MapDef, name: &str, cpus: u32) -> Result<OwnedFd, MapError> {
    let inner = match &def.inner {
        Some(inner) => Some(create_map(inner, &inner.name, cpus)?),
        None => None,
    };
    let max_entries = if def.map_type == BPF_MAP_TYPE_PERF_EVENT_ARRAY && def.max_entries == 0 {
        cpus
    } else {
        def.max_entries
    };
    let fd = sys::map_create(&sys::MapCreate {
        map_type: def.map_type,
        key_size: def.key_size,
        value_size: def.value_size,
        max_entries,
        flags: def.flags,
        numa_node: def.numa_node,
        map_extra: def.map_extra,
        inner: inner.as_ref().map(|f| f.as_fd()),
        name,
    })
    .map_err(|e| MapError {
        errno: e,
        text: format!(
            "BPF_MAP_CREATE {name} (type {}, key {}, value {}, max {}, flags {:#x}): {}",
            def.map_type,
            def.key_size,
            def.value_size,
            max_entries,
            def.flags,
            errno_text(e)
        ),
    })?;
    if let MapOrigin::Data { read_only, .. } = def.origin {
        if !def.data.is_empty() {
            sys::map_update(fd.as_fd(), &0u32.to_ne_bytes(), &def.data)
                .map_err(|e| format!("filling {name}: {}", errno_text(e)))?;
        }
        if read_only {
            sys::map_freeze(fd.as_fd())
                .map_err(|e| format!("freezing {name}: {}", errno_text(e)))?;
        }
    }
    Ok(fd)
}

fn compatible(fd: &OwnedFd, def: &MapDef, cpus: u32) -> bool {
    let Ok(info) = sys::map_info(fd.as_fd()) else {
        return false;
    };
    let max = if def.map_type == BPF_MAP_TYPE_PERF_EVENT_ARRAY && def.max_entries == 0 {
        cpus
    } else {
        def.max_entries
    };
    info.type_ == def.map_type
        && info.key_size == def.key_size
        && info.value_size == def.value_size
        && info.max_entries == max
        && info.map_flags == def.flags
}

fn pin(fd: &OwnedFd, path: &Path) -> Result<(), MapError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{}: NUL in path", path.display()))?;
    sys::obj_pin(fd.as_fd(), &c).map_err(|e| MapError {
        errno: e,
        text: format!("pinning {}: {}", path.display(), errno_text(e)),
    })
}

/// Creates (or takes from its pin) one map; returns its verdict line.
fn open_map(
    def: &MapDef,
    name: &str,
    pins: &Pins,
    pin_dir: &str,
    cpus: u32,
) -> Result<(Created, String), MapError> {
    let path = pins.root.as_ref().map(|r| r.join(pin_dir).join(name));
    match (def.pinning, &path) {
        (0, _) => Ok((
            Created {
                fd: create_map(def, name, cpus)?,
                pin_later: None,
            },
            "none".into(),
        )),
        (PIN_BY_NAME | PIN_REPLACE, None) => Ok((
            Created {
                fd: create_map(def, name, cpus)?,
                pin_later: None,
            },
            format!(
                "not pinned: {}",
                pins.why_not.as_deref().unwrap_or("no scratch bpffs")
            ),
        )),
        (PIN_BY_NAME, Some(path)) => {
            if path.exists() {
                let c =
                    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
                if let Ok(fd) = sys::obj_get(&c)
                    && compatible(&fd, def, cpus)
                {
                    return Ok((
                        Created {
                            fd,
                            pin_later: None,
                        },
                        "reused pin".into(),
                    ));
                }
                // The agent replaces an incompatible pin after the load succeeds.
                let fd = create_map(def, name, cpus)?;
                return Ok((
                    Created {
                        fd,
                        pin_later: Some(path.clone()),
                    },
                    "replaced incompatible pin".into(),
                ));
            }
            let fd = create_map(def, name, cpus)?;
            pin(&fd, path)?;
            Ok((
                Created {
                    fd,
                    pin_later: None,
                },
                "created and pinned".into(),
            ))
        }
        (PIN_REPLACE, Some(path)) => Ok((
            Created {
                fd: create_map(def, name, cpus)?,
                pin_later: Some(path.clone()),
            },
            "pinned after load (replace)".into(),
        )),
        (other, _) => Ok((
            Created {
                fd: create_map(def, name, cpus)?,
                pin_later: None,
            },
            format!("not pinned: pinning {other} not understood"),
        )),
    }
}

/// Loads one program: statistics only first; on a rejection again with the full log.
/// Returns the fd or the errno, and the verifier's log either way.
fn load_program(p: &sys::ProgLoad, opts: &LoadOptions) -> (Result<OwnedFd, i32>, String) {
    let mut stats = vec![0u8; 64 * 1024];
    match sys::prog_load(p, Some((sys::LOG_STATS, &mut stats))) {
        Ok(fd) => return (Ok(fd), sys::c_string(&stats)),
        Err(libc::EPERM) if sys::c_string(&stats).trim().is_empty() => {
            return (Err(libc::EPERM), String::new());
        }
        Err(_) => {}
    }
    let mut size = opts.verbose_log_bytes.max(1 << 16);
    loop {
        let mut log = vec![0u8; size];
        match sys::prog_load(p, Some((sys::LOG_VERBOSE | sys::LOG_STATS, &mut log))) {
            // A log that did not fit: before 6.4 the kernel keeps its start, so grow.
            Err(libc::ENOSPC) if size < (256 << 20) => size *= 4,
            r => return (r, sys::c_string(&log)),
        }
    }
}

pub fn load(bytes: &[u8], opts: &LoadOptions, pins: &Pins) -> ObjectVerdict {
    let start = Instant::now();
    let mut v = ObjectVerdict {
        pinning: match (&pins.root, &pins.why_not) {
            (Some(_), _) => "scratch bpffs in a private mount namespace".into(),
            (None, why) => format!("off: {}", why.as_deref().unwrap_or("no scratch bpffs")),
        },
        ..ObjectVerdict::default()
    };
    let t = Instant::now();
    let mut obj = match Object::parse(bytes) {
        Ok(o) => o,
        Err(e) => {
            v.object_error = Some(e);
            return v;
        }
    };
    v.timings.parse_ms = t.elapsed().as_secs_f64() * 1e3;
    v.unknown_sections = obj
        .unknown_sections
        .iter()
        .map(|(s, f)| UnknownSection {
            section: s.clone(),
            functions: f.clone(),
        })
        .collect();
    if !obj.unplaced_datasecs.is_empty() {
        v.notes.push(format!(
            "BTF data sections without an ELF section, emptied: {}",
            obj.unplaced_datasecs.join(", ")
        ));
    }
    if let Some(ext) = &obj.ext {
        let n: usize = ext.core_relos.values().sum();
        if n > 0 {
            v.notes.push(format!(
                "{n} CO-RE relocations not applied (this loader does not read kernel BTF)"
            ));
        }
    }
    let (config, used) = configure(&obj, opts);
    v.config = used;
    // 1.17+ reads the values from the map: it is created with them, then frozen.
    if let Some(m) = obj.maps.iter_mut().find(|m| m.name == CONFIG_SECTION) {
        m.data = config.clone();
    }
    let renamed = |name: &str| {
        opts.map_renames
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    };

    // Link every program, then keep what the agent keeps.
    let t = Instant::now();
    let links: Vec<Result<Linked, String>> = (0..obj.programs.len())
        .map(|i| relocate::link(&obj, i, &config))
        .collect();
    let linked: Vec<Option<Linked>> = links.iter().map(|l| l.as_ref().ok().cloned()).collect();
    let keep = reachable(&obj, &linked);
    v.timings.link_ms = t.elapsed().as_secs_f64() * 1e3;

    // BTF for function and line info.
    let t = Instant::now();
    let btf_fd = match &obj.btf {
        None => {
            v.btf = "none in object".into();
            None
        }
        Some(b) => {
            let mut b = b.clone();
            let done = b.sanitize(&kernel_btf());
            match sys::btf_load(&b.to_bytes(), false) {
                Ok(fd) => {
                    v.btf = if done.is_empty() {
                        "loaded".into()
                    } else {
                        format!("loaded (sanitised: {})", done.join(", "))
                    };
                    Some(fd)
                }
                Err((e, _)) => {
                    let log = sys::btf_load(&b.to_bytes(), true)
                        .err()
                        .map(|(_, l)| log_tail(&l, 3))
                        .unwrap_or_default();
                    v.btf = format!("refused: {} {log}", errno_text(e))
                        .trim()
                        .to_string();
                    v.notes.push(
                        "programs loaded without function/line info: global functions and \
                         BTF-typed helpers will be refused"
                            .into(),
                    );
                    None
                }
            }
        }
    };
    v.timings.btf_ms = t.elapsed().as_secs_f64() * 1e3;

    // Maps the kept programs use, and the program arrays their tail calls go into.
    let t = Instant::now();
    let mut wanted: Vec<usize> = Vec::new();
    for (i, p) in obj.programs.iter().enumerate() {
        if !keep[i] {
            continue;
        }
        if let Some(l) = &linked[i] {
            wanted.extend(&l.maps_used);
        }
        if let Some(m) = p.tail.as_ref().and_then(|t| obj.map_index(&t.map)) {
            wanted.push(m);
        }
    }
    wanted.sort_unstable();
    wanted.dedup();
    let cpus = possible_cpus();
    let mut maps: HashMap<usize, Created> = HashMap::new();
    let mut map_errors: HashMap<usize, MapError> = HashMap::new();
    for m in wanted {
        let def = &obj.maps[m];
        let name = renamed(&def.name);
        match open_map(def, &name, pins, &opts.pin_dir, cpus) {
            Ok((created, pinning)) => {
                v.maps.push(MapVerdict {
                    name,
                    map_type: def.map_type,
                    pinning,
                    error: None,
                });
                maps.insert(m, created);
            }
            Err(e) => {
                v.maps.push(MapVerdict {
                    name,
                    map_type: def.map_type,
                    pinning: "none".into(),
                    error: Some(e.text.clone()),
                });
                map_errors.insert(m, e);
            }
        }
    }
    v.timings.maps_ms = t.elapsed().as_secs_f64() * 1e3;

    // Programs.
    let license = CString::new(obj.license.replace('\0', "")).unwrap_or_default();
    let mut loaded: HashMap<usize, OwnedFd> = HashMap::new();
    let mut verifier_us = 0u64;
    for (i, p) in obj.programs.iter().enumerate() {
        let f = &obj.functions[p.func];
        if !keep[i] {
            v.pruned.push(Pruned {
                name: f.name.clone(),
                section: p.section.clone(),
                reason: "tail call no entry point reaches (the agent prunes it before loading)"
                    .into(),
            });
            continue;
        }
        if let Some(problem) = &p.slot_problem {
            v.notes.push(problem.clone());
        }
        let ty = p.ty;
        let mut pv = ProgramVerdict {
            name: f.name.clone(),
            section: p.section.clone(),
            prog_type: ty
                .map(|t| t.name.to_string())
                .unwrap_or_else(|| "unknown".into()),
            attach_type: ty
                .filter(|t| !t.attach_name.is_empty())
                .map(|t| t.attach_name.to_string()),
            tail_call: p.tail.as_ref().map(|t| Slot {
                map: renamed(&t.map),
                slot: t.slot,
            }),
            verdict: Verdict::Loaded,
            verified_insns: None,
            xlated_bytes: None,
            insns: 0,
            load_ms: 0.0,
            verification_us: None,
        };
        let unknown = |reason: String| Verdict::Unknown { reason };
        let Some(ty) = ty else {
            pv.verdict = unknown(format!(
                "section {}: no program type (no typed entry program in the object)",
                p.section
            ));
            v.programs.push(pv);
            continue;
        };
        let mut linked = match &links[i] {
            Ok(l) => l.clone(),
            Err(e) => {
                pv.verdict = unknown(format!("not loaded: {e}"));
                v.programs.push(pv);
                continue;
            }
        };
        pv.insns = linked.insns.len() as u32;
        let mut missing = None;
        for fx in &linked.fixups {
            let (Fixup::MapFd { insn, map } | Fixup::MapValue { insn, map }) = *fx;
            match maps.get(&map) {
                Some(c) => {
                    use std::os::fd::AsRawFd;
                    linked.insns[insn].set_imm(c.fd.as_raw_fd());
                }
                None => {
                    missing = Some(
                        map_errors
                            .get(&map)
                            .map(|e| (e.errno, e.text.clone()))
                            .unwrap_or((0, "map not created".into())),
                    )
                }
            }
        }
        if let Some((errno, e)) = missing {
            pv.verdict = if errno == libc::EPERM {
                unknown(e)
            } else {
                Verdict::Rejected {
                    log_tail: String::new(),
                    error: e,
                }
            };
            v.programs.push(pv);
            continue;
        }
        let load = sys::ProgLoad {
            prog_type: ty.prog_type,
            expected_attach_type: ty.attach_type.unwrap_or(0),
            name: &f.name,
            insns: &linked.insns,
            license: &license,
            btf: btf_fd.as_ref().map(|f| f.as_fd()),
            func_info: &linked.func_info,
            line_info: &linked.line_info,
        };
        let t = Instant::now();
        let (result, log) = load_program(&load, opts);
        pv.load_ms = t.elapsed().as_secs_f64() * 1e3;
        v.timings.prog_load_ms += pv.load_ms;
        let (processed, us) = log_stats(&log);
        pv.verified_insns = processed;
        pv.verification_us = us;
        verifier_us += us.unwrap_or(0);
        match result {
            Ok(fd) => {
                if let Ok(info) = sys::prog_info(fd.as_fd()) {
                    pv.xlated_bytes = Some(info.xlated_prog_len);
                    if pv.verified_insns.is_none() && info.verified_insns > 0 {
                        pv.verified_insns = Some(info.verified_insns);
                    }
                }
                loaded.insert(i, fd);
            }
            Err(libc::EPERM) if log.trim().is_empty() => {
                pv.verdict = unknown(format!(
                    "bpf_prog_load: {} (needs root / CAP_BPF)",
                    errno_text(libc::EPERM)
                ));
            }
            Err(e) => {
                pv.verdict = Verdict::Rejected {
                    log_tail: log_tail(&log, opts.log_lines),
                    error: errno_text(e),
                };
            }
        }
        v.programs.push(pv);
    }
    v.timings.verifier_ms = verifier_us as f64 / 1e3;

    // Tail calls wired, then the deferred pins.
    for (i, p) in obj.programs.iter().enumerate() {
        let (Some(tail), Some(fd)) = (&p.tail, loaded.get(&i)) else {
            continue;
        };
        let Some(m) = obj.map_index(&tail.map) else {
            continue;
        };
        let Some(array) = maps.get(&m) else { continue };
        if obj.maps[m].map_type != BPF_MAP_TYPE_PROG_ARRAY {
            v.notes.push(format!("{} is not a program array", tail.map));
            continue;
        }
        use std::os::fd::AsRawFd;
        let value = (fd.as_raw_fd() as u32).to_ne_bytes();
        match sys::map_update(array.fd.as_fd(), &tail.slot.to_ne_bytes(), &value) {
            Ok(()) => v.tail_calls.push(TailCall {
                map: renamed(&tail.map),
                slot: tail.slot,
                program: obj.functions[p.func].name.clone(),
            }),
            Err(e) => v.notes.push(format!(
                "{}[{}] ← {}: {}",
                renamed(&tail.map),
                tail.slot,
                obj.functions[p.func].name,
                errno_text(e)
            )),
        }
    }
    for c in maps.values() {
        if let Some(path) = &c.pin_later
            && let Err(e) = pin(&c.fd, path)
        {
            v.notes.push(e.text);
        }
    }
    v.programs.sort_by(|a, b| a.name.cmp(&b.name));
    v.tail_calls
        .sort_by(|a, b| (&a.map, a.slot).cmp(&(&b.map, b.slot)));
    v.maps.sort_by(|a, b| a.name.cmp(&b.name));
    v.timings.total_ms = start.elapsed().as_secs_f64() * 1e3;
    v
}
