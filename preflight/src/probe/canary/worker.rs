//! `preflight __canary-worker`: runs in its own network and mount namespaces, prints an
//! [`Output`] (the [`CanaryReport`], and the programs' aya-log records when asked for) as JSON
//! on stdout. See the module above for why nothing outlives it.
use std::{
    collections::BTreeMap,
    fs::File,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, MapData, ProgramArray,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{
        CgroupAttachMode, CgroupSockAddr, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::LinkOrder,
        tc::{self, NlOptions, TcAttachOptions},
    },
};
use aya_log::EbpfLogger;
use futures_util::TryStreamExt as _;
use nix::{
    mount::{MsFlags, mount},
    sched::{CloneFlags, unshare},
};
use preflight_ebpf_common::{Counter, TAIL_CALL_SLOT, maps, programs};
use rtnetlink::{LinkUnspec, LinkVeth};
use serde::{Deserialize, Serialize};

use super::{
    CanaryReport, CanaryResult, EBPF_LOG_ENV, LOG_OBJECT, OBJECT, cgroup, janitor, packet,
};
use crate::{model::Support, probe::live::error_chain};

const VETH_A: &str = "pfcanary-a";
const VETH_B: &str = "pfcanary-b";
const FRAMES: usize = 8;

/// What the worker prints on stdout.
#[derive(Debug, Serialize, Deserialize)]
pub struct Output {
    pub report: CanaryReport,
    /// The programs' aya-log records, in order; empty unless the parent asked for them.
    #[serde(default)]
    pub ebpf_log: Vec<EbpfRecord>,
}

/// One aya-log record from a canary program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EbpfRecord {
    pub level: log::Level,
    pub message: String,
}

/// The `log::Log` aya-log writes to: keeps the records for [`Output::ebpf_log`].
#[derive(Default)]
pub struct Collected(Mutex<Vec<EbpfRecord>>);

impl log::Log for Collected {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let line = EbpfRecord {
            level: record.level(),
            message: record.args().to_string(),
        };
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn flush(&self) {}
}

impl Collected {
    pub fn into_records(self) -> Vec<EbpfRecord> {
        self.0.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    fn note(&self, message: String) {
        log::Log::log(
            self,
            &log::Record::builder()
                .level(log::Level::Debug)
                .args(format_args!("{message}"))
                .build(),
        );
    }
}

pub fn worker_main() -> std::process::ExitCode {
    let start = Instant::now();
    let collected = Collected::default();
    let want_log = std::env::var_os(EBPF_LOG_ENV).is_some();
    let mut report = run(want_log.then_some(&collected));
    report.elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
    let output = Output {
        report,
        ebpf_log: collected.into_records(),
    };
    println!(
        "{}",
        serde_json::to_string(&output).expect("report serialises")
    );
    std::process::ExitCode::SUCCESS
}

/// The errno at the bottom of an error chain, if any.
fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(code) = io.raw_os_error()
        {
            return Some(code);
        }
        cur = err.source();
    }
    None
}

/// An attach or load error: no permission is "could not tell", anything else is the kernel
/// refusing the feature.
fn refused(e: &(dyn std::error::Error + 'static)) -> Support {
    let reason = error_chain(e);
    match errno_of(e) {
        Some(libc::EPERM | libc::EACCES) => Support::Unknown { reason },
        _ => Support::Unavailable {
            reason: Some(reason),
        },
    }
}

struct Results(BTreeMap<String, CanaryResult>);

impl Results {
    fn set(&mut self, name: &str, support: Support, detail: impl Into<String>) {
        self.0.insert(
            name.to_string(),
            CanaryResult {
                support,
                detail: detail.into(),
            },
        );
    }
    fn counted(&mut self, name: &str, count: u64, what: &str) {
        if count > 0 {
            self.set(
                name,
                Support::Available,
                format!("{what}; ran {count} times"),
            );
        } else {
            self.set(
                name,
                Support::Unavailable {
                    reason: Some(format!("{what}, but it never ran")),
                },
                format!("{what}; counter stayed 0"),
            );
        }
    }
}

/// Loads the canary programs: `log_object` with a logger writing to `log` when `log` is given and
/// it loads (its ring buffer needs kernel 5.8; the reason is noted in `log` when it does not),
/// otherwise `object`. The worker passes [`LOG_OBJECT`] and [`OBJECT`].
pub fn load<'log>(
    log_object: &[u8],
    object: &[u8],
    log: Option<&'log Collected>,
) -> Result<(Ebpf, Option<EbpfLogger<&'log Collected>>), aya::EbpfError> {
    if let Some(log) = log {
        match load_logging(log_object, log) {
            Ok((ebpf, logger)) => return Ok((ebpf, Some(logger))),
            Err(why) => log.note(format!("aya-log off: {why}; running the default build")),
        }
    }
    Ok((loader().load(object)?, None))
}

fn load_logging<'log>(
    object: &[u8],
    log: &'log Collected,
) -> Result<(Ebpf, EbpfLogger<&'log Collected>), String> {
    if object.is_empty() {
        return Err("this binary was built without the logging object".into());
    }
    let mut ebpf = loader().load(object).map_err(|e| {
        format!(
            "the logging build of the canaries did not load ({})",
            error_chain(&e)
        )
    })?;
    let logger = EbpfLogger::init_with_logger(&mut ebpf, log)
        .map_err(|e| format!("aya-log's reader did not start ({})", error_chain(&e)))?;
    Ok((ebpf, logger))
}

/// No kernel BTF: the canaries use no CO-RE relocations, and parsing /sys/kernel/btf/vmlinux
/// (what `Ebpf::load` does) costs ~30 MiB of resident memory for nothing.
fn loader() -> EbpfLoader<'static> {
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    loader
}

fn run(log: Option<&Collected>) -> CanaryReport {
    // SAFETY: prctl with integer arguments; the worker must not outlive `preflight`.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };

    // Find the cgroup and start the janitor while still in the host's namespaces.
    let cg_mount = cgroup::cgroup2_mount();
    let scratch = cg_mount.as_deref().map(cgroup::scratch_dir);
    let janitor = scratch.as_deref().map(janitor::spawn);

    if let Err(e) = unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS) {
        return CanaryReport::all_unknown(&format!(
            "unshare(CLONE_NEWNET|CLONE_NEWNS): {e} (needs root: CAP_SYS_ADMIN and CAP_BPF)"
        ));
    }
    // Keep every mount below private to this namespace.
    if let Err(e) = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        return CanaryReport::all_unknown(&format!(
            "making / private in the scratch mount namespace: {e}"
        ));
    }
    let (mut ebpf, mut logger) = match load(LOG_OBJECT, OBJECT, log) {
        Ok(loaded) => loaded,
        Err(e) => {
            let reason = format!("loading the canary object: {}", error_chain(&e));
            return CanaryReport::all_unknown(&reason);
        }
    };
    let mut results = Results(BTreeMap::new());

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return CanaryReport::all_unknown(&format!("tokio runtime: {e}")),
    };
    let veth = runtime.block_on(make_veth());

    attach_and_send(&mut ebpf, &veth, &mut results);
    pin_round_trip(&mut ebpf, &mut results);
    sock_addr(&mut ebpf, scratch.as_deref(), janitor, &mut results);
    // Every record is in the ring buffer by now: the programs wrote them before returning.
    if let Some(logger) = &mut logger {
        logger.flush();
    }

    for name in super::CANARIES {
        if !results.0.contains_key(*name) {
            results.set(
                name,
                Support::Unknown {
                    reason: "not reached".into(),
                },
                "",
            );
        }
    }
    CanaryReport {
        results: results.0,
        elapsed_ms: 0.0,
    }
}

/// lo up, and a veth pair, both ends up, in the scratch namespace. Returns (ifindex A, B).
async fn make_veth() -> Result<(u32, u32), String> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
    tokio::spawn(conn);
    let add = LinkVeth::new(VETH_A, VETH_B).build();
    handle
        .link()
        .add(add)
        .execute()
        .await
        .map_err(|e| format!("creating veth pair: {e}"))?;
    let mut indexes = Vec::new();
    for name in ["lo", VETH_A, VETH_B] {
        let msg = handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await
            .map_err(|e| format!("looking up {name}: {e}"))?
            .ok_or_else(|| format!("{name} not found after creation"))?;
        let index = msg.header.index;
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| format!("setting {name} up: {e}"))?;
        indexes.push(index);
    }
    Ok((indexes[1], indexes[2]))
}

fn counter(ebpf: &Ebpf, slot: Counter) -> u64 {
    ebpf.map(maps::COUNTERS)
        .and_then(|m| Array::<_, u64>::try_from(m).ok())
        .and_then(|a| a.get(&slot.index(), 0).ok())
        .unwrap_or(0)
}

fn load_classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier, Support> {
    let prog: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or_else(|| Support::Unknown {
            reason: format!("{name} missing from the object"),
        })?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| refused(&e))?;
    prog.load().map_err(|e| refused(&e))?;
    Ok(prog)
}

fn attach_and_send(ebpf: &mut Ebpf, veth: &Result<(u32, u32), String>, results: &mut Results) {
    let (_a, b) = match veth {
        Ok(pair) => *pair,
        Err(e) => {
            for name in ["tc", "tcx", "xdp", "tail_call", "lru_hash", "lpm_trie"] {
                results.set(name, Support::Unknown { reason: e.clone() }, "");
            }
            return;
        }
    };

    // Tail call target first: the program array must hold it before traffic flows.
    let tail_ready = (|| -> Result<(), Support> {
        let mut calls =
            ProgramArray::try_from(ebpf.take_map(maps::CALLS).ok_or(Support::Unknown {
                reason: format!("{} map missing", maps::CALLS),
            })?)
            .map_err(|e| refused(&e))?;
        let tail = load_classifier(ebpf, programs::TAIL)?;
        let fd = tail.fd().map_err(|e| refused(&e))?;
        calls.set(TAIL_CALL_SLOT, fd, 0).map_err(|e| refused(&e))?;
        // The program array keeps its entries only while a reference to the map exists;
        // the tc program holds one once loaded, so the handle can go.
        std::mem::forget(calls);
        Ok(())
    })();

    if let Some(map) = ebpf.map_mut(maps::PREFIXES)
        && let Ok(mut trie) = LpmTrie::<_, u32, u32>::try_from(map)
    {
        let _ = trie.insert(
            &Key::new(8, u32::from_be_bytes([10, 0, 0, 0]).to_be()),
            1,
            0,
        );
    }

    // Legacy tc through netlink: clsact qdisc + cls_bpf filter on A's ingress.
    let tc = load_classifier(ebpf, programs::TC).and_then(|p| {
        if let Err(e) = tc::qdisc_add_clsact(VETH_A) {
            return Err(refused(&e));
        }
        p.attach_with_options(
            VETH_A,
            TcAttachType::Ingress,
            TcAttachOptions::Netlink(NlOptions::default()),
        )
        .map_err(|e| refused(&e))
    });
    // tcx (6.6+): a bpf link on B's egress, where the AF_PACKET frames leave.
    let tcx = load_classifier(ebpf, programs::TCX).and_then(|p| {
        p.attach_with_options(
            VETH_B,
            TcAttachType::Egress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(|e| refused(&e))
    });
    // XDP on A: native (veth supports it), else generic.
    let xdp = (|| -> Result<&'static str, Support> {
        let prog: &mut Xdp = ebpf
            .program_mut(programs::XDP)
            .ok_or(Support::Unknown {
                reason: format!("{} missing", programs::XDP),
            })?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| refused(&e))?;
        prog.load().map_err(|e| refused(&e))?;
        match prog.attach(VETH_A, XdpMode::Driver) {
            Ok(_) => Ok("native (driver) mode"),
            Err(_) => prog
                .attach(VETH_A, XdpMode::Skb)
                .map(|_| "generic (skb) mode")
                .map_err(|e| refused(&e)),
        }
    })();

    let sent = packet::send(b, &packet::frame(), FRAMES);
    // Delivery to the peer is asynchronous (backlog / NAPI); wait briefly for the counters.
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline
        && (counter(ebpf, Counter::Tc) < FRAMES as u64 && tc.is_ok()
            || counter(ebpf, Counter::Xdp) < FRAMES as u64 && xdp.is_ok())
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    if let Err(e) = &sent {
        let reason = format!("sending test frames on {VETH_B}: {e}");
        for name in ["tc", "tcx", "xdp", "tail_call", "lru_hash", "lpm_trie"] {
            results.set(
                name,
                Support::Unknown {
                    reason: reason.clone(),
                },
                "",
            );
        }
        return;
    }

    match &tc {
        Ok(_) => results.counted(
            "tc",
            counter(ebpf, Counter::Tc),
            &format!("sched_cls on {VETH_A} ingress via clsact/netlink"),
        ),
        Err(s) => results.set("tc", s.clone(), "attach through clsact/netlink failed"),
    }
    match &tcx {
        Ok(_) => results.counted(
            "tcx",
            counter(ebpf, Counter::Tcx),
            &format!("sched_cls on {VETH_B} egress via tcx link"),
        ),
        Err(s) => results.set(
            "tcx",
            s.clone(),
            "tcx needs kernel 6.6; Cilium falls back to clsact",
        ),
    }
    match &xdp {
        Ok(mode) => results.counted(
            "xdp",
            counter(ebpf, Counter::Xdp),
            &format!("xdp on {VETH_A}, {mode}"),
        ),
        Err(s) => results.set("xdp", s.clone(), "attach failed in native and generic mode"),
    }
    match (&tail_ready, &tc) {
        (Err(s), _) => results.set("tail_call", s.clone(), "filling the program array failed"),
        (Ok(()), Err(_)) => results.set(
            "tail_call",
            Support::Unknown {
                reason: "tc canary did not attach".into(),
            },
            "",
        ),
        (Ok(()), Ok(_)) => results.counted(
            "tail_call",
            counter(ebpf, Counter::Tail),
            &format!("tc program tail-called slot {TAIL_CALL_SLOT} of a prog_array"),
        ),
    }
    if tc.is_ok() {
        let src = u32::from_be_bytes(packet::SOURCE);
        let flows = ebpf
            .map(maps::FLOWS)
            .and_then(|m| HashMap::<_, u32, u64>::try_from(m).ok())
            .and_then(|h| h.get(&src, 0).ok());
        match flows {
            Some(n) => results.set(
                "lru_hash",
                Support::Available,
                format!("LRU hash entry for 10.1.2.3 counted {n} packets"),
            ),
            None => results.set(
                "lru_hash",
                Support::Unavailable {
                    reason: Some("no LRU entry after traffic".into()),
                },
                "",
            ),
        }
        results.counted(
            "lpm_trie",
            counter(ebpf, Counter::LpmHit),
            "LPM lookup of 10.1.2.3 matched 10.0.0.0/8",
        );
    } else {
        for name in ["lru_hash", "lpm_trie"] {
            results.set(
                name,
                Support::Unknown {
                    reason: "tc canary did not attach".into(),
                },
                "",
            );
        }
    }
}

fn sock_addr(
    ebpf: &mut Ebpf,
    scratch: Option<&Path>,
    janitor: Option<std::io::Result<()>>,
    results: &mut Results,
) {
    let name = "cgroup_sock_addr";
    let Some(dir) = scratch else {
        results.set(
            name,
            Support::Unknown {
                reason: "no cgroup v2 mount found".into(),
            },
            "",
        );
        return;
    };
    if let Some(Err(e)) = janitor {
        // Without a janitor a kill could leave the directory behind: do not create it.
        results.set(
            name,
            Support::Unknown {
                reason: format!("cannot start the cleanup janitor: {e}"),
            },
            "",
        );
        return;
    }
    if let Err(e) = std::fs::create_dir(dir) {
        results.set(
            name,
            Support::Unknown {
                reason: format!("mkdir {}: {e}", dir.display()),
            },
            "",
        );
        return;
    }
    let own = cgroup::cgroup2_mount()
        .as_deref()
        .and_then(cgroup::own_cgroup);
    let outcome = (|| -> Result<String, Support> {
        let cg = File::open(dir).map_err(|e| Support::Unknown {
            reason: format!("open {}: {e}", dir.display()),
        })?;
        for prog_name in [programs::CONNECT4, programs::SENDMSG4] {
            let prog: &mut CgroupSockAddr = ebpf
                .program_mut(prog_name)
                .ok_or(Support::Unknown {
                    reason: format!("{prog_name} missing"),
                })?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| refused(&e))?;
            prog.load().map_err(|e| refused(&e))?;
            prog.attach(&cg, CgroupAttachMode::Single)
                .map_err(|e| refused(&e))?;
        }
        cgroup::move_into(dir).map_err(|e| Support::Unknown {
            reason: format!("joining {}: {e}", dir.display()),
        })?;
        hold_for_tests();
        let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
        let connected = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.connect(target));
        let sent = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(b"canary", target));
        if let Some(own) = &own {
            let _ = cgroup::move_into(own);
        }
        let (c, s) = (
            counter(ebpf, Counter::Connect4),
            counter(ebpf, Counter::Sendmsg4),
        );
        if c > 0 && s > 0 {
            Ok(format!(
                "connect4 ran {c}x, sendmsg4 ran {s}x on {}",
                dir.display()
            ))
        } else {
            Err(Support::Unavailable {
                reason: Some(format!(
                    "attached, but connect4 ran {c}x and sendmsg4 {s}x (connect: {connected:?}, send: {sent:?})"
                )),
            })
        }
    })();
    if let Some(own) = &own {
        let _ = cgroup::move_into(own);
    }
    let _ = std::fs::remove_dir(dir);
    match outcome {
        Ok(detail) => results.set(name, Support::Available, detail),
        Err(s) => results.set(name, s, ""),
    }
}

/// Testing hook: `PREFLIGHT_TEST_HOLD_MS=N` makes the worker wait N ms at its fullest point
/// (veth, tc/tcx/XDP links, private bpffs, scratch cgroup joined with programs attached), so the
/// residue test can SIGKILL it there. It prints `preflight-canary-holding` on stderr first.
fn hold_for_tests() {
    if let Some(ms) = std::env::var("PREFLIGHT_TEST_HOLD_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        eprintln!("preflight-canary-holding");
        std::thread::sleep(Duration::from_millis(ms));
    }
}

fn pin_round_trip(ebpf: &mut Ebpf, results: &mut Results) {
    let name = "bpffs_pin";
    let root = Path::new("/sys/fs/bpf");
    if let Err(e) = mount(
        Some("bpf"),
        root,
        Some("bpf"),
        MsFlags::empty(),
        None::<&str>,
    ) {
        results.set(
            name,
            Support::Unknown {
                reason: format!("mounting a private bpffs at {}: {e}", root.display()),
            },
            "",
        );
        return;
    }
    match nix::sys::statfs::statfs(root) {
        Ok(st) if st.filesystem_type().0 == crate::host::mounts::BPF_FS_MAGIC => {}
        Ok(st) => {
            let reason = format!(
                "{} has magic {:#x}, not bpffs",
                root.display(),
                st.filesystem_type().0
            );
            results.set(
                name,
                Support::Unavailable {
                    reason: Some(reason),
                },
                "",
            );
            return;
        }
        Err(e) => {
            results.set(
                name,
                Support::Unknown {
                    reason: format!("statfs: {e}"),
                },
                "",
            );
            return;
        }
    }
    let path = root.join("preflight_counters");
    let outcome = (|| -> Result<String, Support> {
        let map = ebpf.map(maps::COUNTERS).ok_or(Support::Unknown {
            reason: format!("{} missing", maps::COUNTERS),
        })?;
        map.pin(&path).map_err(|e| refused(&e))?;
        let pinned = MapData::from_pin(&path).map_err(|e| refused(&e))?;
        let reopened = pinned.info().map_err(|e| refused(&e))?.id();
        let original = match map {
            aya::maps::Map::Array(data) => data.info().map_err(|e| refused(&e))?.id(),
            _ => {
                return Err(Support::Unknown {
                    reason: format!("{} is not an array", maps::COUNTERS),
                });
            }
        };
        std::fs::remove_file(&path).map_err(|e| Support::Unknown {
            reason: format!("unpin: {e}"),
        })?;
        if reopened == original {
            Ok(format!(
                "pinned map id {original} at {}, reopened it, unpinned",
                path.display()
            ))
        } else {
            Err(Support::Unavailable {
                reason: Some(format!("reopened map id {reopened} != {original}")),
            })
        }
    })();
    match outcome {
        Ok(detail) => results.set(name, Support::Available, detail),
        Err(s) => results.set(name, s, ""),
    }
}
