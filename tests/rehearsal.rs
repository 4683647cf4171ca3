//! The planner's choices rehearsed on this machine's kernel: three "nodes" as network
//! namespaces on one L2 segment (a bridge in a fourth namespace, the underlay), each with
//! flannel's VXLAN on UDP 8472 and pod subnet from 10.42.0.0/16, and — mid-migration — Cilium's
//! overlay on the port and pod CIDR `plan --cluster` chose for the fixture cluster, with routes
//! as the procedure leaves them: one node migrated (its pod addressed from Cilium's CIDR), two
//! not, every node holding both overlays. A pod namespace on the migrated node must reach a pod
//! on an unmigrated node and back, over UDP and TCP.
//!
//! Cilium's side is shaped as the agent builds it: `cilium_vxlan` a metadata-mode (`external`)
//! VXLAN device on the chosen port with no VNI and no peers, `cilium_host`/`cilium_net`, routes
//! to other nodes' slices through `cilium_host`, and tc programs of our own
//! (fixtures/rehearsal/overlay.c, built with clang and attached with tc where the agent attaches
//! cil_from_host and cil_from_overlay) that set each packet's tunnel key with the source's
//! security identity as VNI and check it on arrival. The kernel also shows why the port matters:
//! a second VXLAN socket on flannel's 8472 is refused.
//!
//! What this is, and is not: the kernel's VXLAN, veths, bridges, routes and tc/eBPF hooks, with
//! Cilium's wire format (VNI = identity, zero UDP checksum, the chosen port). It checks the
//! plan's assumptions — both tunnels bind side by side, the two pod CIDRs route through the
//! Linux stack without touching each other, traffic crosses from one overlay to the other and
//! back — not Cilium itself (no agent, no policy, no ipcache: two small programs stand for its
//! encapsulation; `bpf.hostLegacyRouting=true` leaves the rest of the routing to the kernel, as
//! here).
//!
//! Cleanup even when killed: the whole rehearsal runs in a child process in its own mount
//! namespace (`unshare --mount`), whose `/run` is a private tmpfs, so `ip netns add` names live
//! only there; the child dies with the test (PR_SET_PDEATHSIG) and the kernel then frees every
//! namespace, device and route it made. Nothing is created in this machine's own namespaces.
//!
//! Root is needed (CI runs as root); without it they are listed as ignored, with why (the `prereq` cfg, preflight/build.rs).
//! Timings (setup, round trips) are printed: `cargo test --test rehearsal -- --nocapture`.
mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsFd,
    process::Command,
    time::{Duration, Instant},
};

const WORKER_ENV: &str = "PREFLIGHT_REHEARSAL_WORKER";
const HOLD_ENV: &str = "PREFLIGHT_REHEARSAL_HOLD";

/// What `plan --cluster` chose for fixtures/cluster/k3s-three-node (asserted against the plan
/// in `plan_choices_are_what_the_rehearsal_uses`).
const CILIUM_CIDR_PREFIX: &str = "10.45";
const CILIUM_PORT: u16 = 8473;
const FLANNEL_PORT: u16 = 8472;

fn sh(args: &[&str]) {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        o.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn ip(ns: &str, args: &str) {
    let mut v = vec!["ip", "-n", ns];
    v.extend(args.split_whitespace());
    sh(&v);
}

/// Enter a named namespace on this thread only (setns affects the calling thread).
fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

fn node(i: usize) -> String {
    format!("node{i}")
}
fn pod(i: usize) -> String {
    format!("pod{i}")
}

/// Three nodes: node1 migrated, node0 (the server) and node2 not.
const MIGRATED: usize = 1;

fn setup() -> Duration {
    let t = Instant::now();
    ip("lan", "link add br0 type bridge");
    ip("lan", "link set br0 up");
    for i in 0..3 {
        let (n, p) = (node(i), pod(i));
        let underlay = format!("192.168.60.{}", 11 + i);
        ip(&n, "link set lo up");
        sh(&[
            "ip",
            "link",
            "add",
            &format!("up{i}"),
            "netns",
            "lan",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &n,
        ]);
        ip("lan", &format!("link set up{i} master br0 up"));
        ip(&n, &format!("addr add {underlay}/24 dev eth0"));
        ip(&n, "link set eth0 up");
        for (k, v) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
        ] {
            sh(&[
                "ip",
                "netns",
                "exec",
                &n,
                "sysctl",
                "-qw",
                &format!("{k}={v}"),
            ]);
        }
        // flannel: VXLAN 8472, flooding to every other node (flannel programs per-peer FDB
        // entries; an all-zero entry per peer is the same reachability), cni0 with the pod subnet.
        ip(
            &n,
            &format!(
                "link add flannel.1 type vxlan id 1 dstport {FLANNEL_PORT} local {underlay} dev eth0"
            ),
        );
        ip(&n, &format!("addr add 10.42.{i}.0/32 dev flannel.1"));
        ip(&n, "link set flannel.1 up");
        ip(&n, "link add cni0 type bridge");
        ip(&n, &format!("addr add 10.42.{i}.1/24 dev cni0"));
        ip(&n, "link set cni0 up");
        // Cilium next to it (the agent runs on every node from the start): cilium_vxlan as the
        // agent creates it (pkg/datapath/loader/netlink.go, setupVxlanDevice: FlowBased, i.e.
        // `external`, on the tunnel port, no VNI and no peers: the datapath sets each packet's
        // tunnel key), cilium_host/cilium_net with the node's router address from its slice of
        // Cilium's CIDR. ARP is off on cilium_host: every IPv4 packet routed there is redirected
        // into the tunnel by the egress program before a neighbour could matter.
        ip(
            &n,
            &format!("link add cilium_vxlan type vxlan external dstport {CILIUM_PORT}"),
        );
        ip(&n, "link set cilium_vxlan up");
        ip(&n, "link add cilium_host type veth peer name cilium_net");
        ip(
            &n,
            &format!("addr add {CILIUM_CIDR_PREFIX}.{i}.1/32 dev cilium_host"),
        );
        ip(&n, "link set cilium_host arp off");
        ip(&n, "link set cilium_net up");
        ip(&n, "link set cilium_host up");
        attach_overlay(i);
        for j in (0..3).filter(|&j| j != i) {
            let peer = format!("192.168.60.{}", 11 + j);
            sh(&[
                "bridge",
                "-n",
                &n,
                "fdb",
                "append",
                "00:00:00:00:00:00",
                "dev",
                "flannel.1",
                "dst",
                &peer,
            ]);
            ip(
                &n,
                &format!("route add 10.42.{j}.0/24 via 10.42.{j}.0 dev flannel.1 onlink"),
            );
            // The agent's tunnel-mode route to another node's slice: through cilium_host, whose
            // egress program encapsulates (`via` the node's own router address, as `ip route`
            // shows on a Cilium node).
            ip(
                &n,
                &format!(
                    "route add {CILIUM_CIDR_PREFIX}.{j}.0/24 via {CILIUM_CIDR_PREFIX}.{i}.1 dev cilium_host src {CILIUM_CIDR_PREFIX}.{i}.1"
                ),
            );
        }
        // The pod: on flannel's bridge, or (migrated node) on a routed veth from Cilium's CIDR.
        ip(&p, "link set lo up");
        sh(&[
            "ip",
            "link",
            "add",
            &format!("lxc{i}"),
            "netns",
            &n,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &p,
        ]);
        if i == MIGRATED {
            let addr = format!("{CILIUM_CIDR_PREFIX}.{i}.10");
            ip(&p, &format!("addr add {addr}/32 dev eth0"));
            ip(&p, "link set eth0 up");
            ip(&n, &format!("link set lxc{i} up"));
            sh(&[
                "ip",
                "netns",
                "exec",
                &n,
                "sysctl",
                "-qw",
                &format!("net.ipv4.conf.lxc{i}.proxy_arp=1"),
            ]);
            ip(&n, &format!("route add {addr}/32 dev lxc{i}"));
            ip(
                &p,
                &format!("route add {CILIUM_CIDR_PREFIX}.{i}.1 dev eth0 scope link"),
            );
            ip(
                &p,
                &format!("route add default via {CILIUM_CIDR_PREFIX}.{i}.1 dev eth0"),
            );
        } else {
            ip(&p, &format!("addr add 10.42.{i}.10/24 dev eth0"));
            ip(&p, "link set eth0 up");
            ip(&n, &format!("link set lxc{i} master cni0 up"));
            ip(&p, &format!("route add default via 10.42.{i}.1"));
        }
    }
    t.elapsed()
}

/// The security identity Cilium's encapsulation carries as VNI for what crosses the overlays
/// here: a flannel pod's packet forwarded by a node's stack into cilium_host has an address the
/// ipcache only knows as the world (resolve_srcid_ipv4 in bpf/bpf_host.c with from_host;
/// `WORLD_IPV4_ID` is 2 in an IPv4-only cluster, bpf/node_config.h).
const WORLD_ID: u32 = 2;

/// fixtures/rehearsal/overlay.c: our own tc programs doing what Cilium's datapath does at the
/// overlay (see the file), compiled by clang for node `i`.
const OVERLAY_C: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/rehearsal/overlay.c"
);

/// The clang scripts/setup.sh installs (clang-19, else clang-16, else a plain clang).
fn clang() -> &'static str {
    ["clang-19", "clang-16", "clang"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect(
            "no clang (scripts/setup.sh installs clang-19): the rehearsal builds its tc programs",
        )
}

fn ifindex(ns: &str, dev: &str) -> u32 {
    let o = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", "dev", dev])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("ip -j link");
    v[0]["ifindex"].as_u64().expect("ifindex") as u32
}

/// fixtures/rehearsal/overlay.c built for node `i`'s cilium_vxlan, with `identity` as the VNI
/// it sets and the only one it accepts.
fn build_overlay(i: usize, identity: u32) -> String {
    let n = node(i);
    let obj = format!("/run/rehearsal/overlay-{n}-{identity}.o");
    std::fs::create_dir_all("/run/rehearsal").unwrap();
    let (a, b) = CILIUM_CIDR_PREFIX.split_once('.').unwrap();
    // Linux UAPI headers (linux/bpf.h) live beside the multiarch asm/ dir on Debian.
    let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    sh(&[
        clang(),
        "-O2",
        "-target",
        "bpf",
        "-I",
        &multiarch,
        &format!("-DCIDR_A={a}"),
        &format!("-DCIDR_B={b}"),
        "-DUNDERLAY_A=192",
        "-DUNDERLAY_B=168",
        "-DUNDERLAY_C=60",
        "-DUNDERLAY_BASE=11",
        &format!("-DIDENTITY={identity}"),
        &format!("-DVXLAN_IFINDEX={}", ifindex(&n, "cilium_vxlan")),
        "-c",
        OVERLAY_C,
        "-o",
        &obj,
    ]);
    obj
}

/// A tc program from `obj` on `dev`'s clsact hook `dir`, direct-action; any earlier one there
/// goes first.
fn attach(i: usize, dev: &str, dir: &str, obj: &str, sec: &str) {
    let n = node(i);
    let _ = Command::new("tc")
        .args(["-n", &n, "qdisc", "del", "dev", dev, "clsact"])
        .output();
    sh(&["tc", "-n", &n, "qdisc", "add", "dev", dev, "clsact"]);
    sh(&[
        "tc", "-n", &n, "filter", "add", "dev", dev, dir, "bpf", "da", "obj", obj, "sec", sec,
    ]);
}

/// Node `i`'s overlay programs, attached where the agent attaches cil_from_host (cilium_host
/// egress) and cil_from_overlay (cilium_vxlan ingress).
fn attach_overlay(i: usize) {
    let obj = build_overlay(i, WORLD_ID);
    attach(i, "cilium_host", "egress", &obj, "tc/encap");
    attach(i, "cilium_vxlan", "ingress", &obj, "tc/decap");
}

/// The VNI really is checked: with node `to`'s decap expecting another identity, pod `from`'s
/// packets still reach `to`'s cilium_vxlan (counted) but are dropped there, so no answer comes.
/// The right program is put back afterwards.
fn a_wrong_identity_is_dropped(from: usize, to: usize) {
    let wrong = build_overlay(to, WORLD_ID + 1);
    attach(to, "cilium_vxlan", "ingress", &wrong, "tc/decap");
    let before = packets(to, "cilium_vxlan").0;
    let answered = std::thread::scope(|s| {
        s.spawn(|| {
            enter(&pod(from));
            let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
            udp.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let dst: SocketAddr = format!("{}:7", pod_addr(to)).parse().unwrap();
            (0..3).any(|_| {
                udp.send_to(b"wrong identity", dst).unwrap();
                udp.recv_from(&mut [0u8; 64]).is_ok()
            })
        })
        .join()
        .unwrap()
    });
    let arrived = packets(to, "cilium_vxlan").0 - before;
    attach(
        to,
        "cilium_vxlan",
        "ingress",
        &build_overlay(to, WORLD_ID),
        "tc/decap",
    );
    assert!(!answered, "pod{to} answered over a VNI its decap refuses");
    assert!(arrived >= 3, "the packets reached cilium_vxlan ({arrived})");
}

/// Why the plan must not give Cilium flannel's port: a second VXLAN socket on UDP 8472 next to
/// flannel.1 is refused by the kernel when the device comes up (the agent's metadata-mode
/// device cannot share flannel's socket), so the agent would fail on every node.
fn flannel_port_is_refused_to_a_second_overlay(i: usize) {
    let n = node(i);
    ip(
        &n,
        &format!("link add probe_vxlan type vxlan external dstport {FLANNEL_PORT}"),
    );
    let o = Command::new("ip")
        .args(["-n", &n, "link", "set", "probe_vxlan", "up"])
        .output()
        .unwrap();
    ip(&n, "link del probe_vxlan");
    assert!(
        !o.status.success(),
        "a metadata-mode VXLAN came up on flannel's port {FLANNEL_PORT}"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Address already in use"), "{err}");
}

fn pod_addr(i: usize) -> String {
    if i == MIGRATED {
        format!("{CILIUM_CIDR_PREFIX}.{i}.10")
    } else {
        format!("10.42.{i}.10")
    }
}

/// Echo servers (UDP and TCP on port 7) in pod `i`'s namespace, on their own thread.
fn serve(i: usize) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter(&pod(i));
        let udp = UdpSocket::bind("0.0.0.0:7").expect("udp bind");
        let tcp = TcpListener::bind("0.0.0.0:7").expect("tcp bind");
        tx.send(()).unwrap();
        std::thread::spawn(move || {
            for s in tcp.incoming() {
                let Ok(mut s) = s else { continue };
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        });
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    });
    rx.recv().unwrap();
}

/// Round trips from pod `from` to pod `to`: UDP (n echoes, min/median) and one TCP echo, the
/// TCP source address checked on the server's answer path (the reply must come back to it).
fn round_trips(from: usize, to: usize, n: usize) -> (Duration, Duration, Duration) {
    let target = pod_addr(to);
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(&pod(from));
            let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
            udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let dst: SocketAddr = format!("{target}:7").parse().unwrap();
            let mut rtts = Vec::new();
            // The first packets resolve ARP over the overlays: give them a few tries.
            let mut misses = 0;
            while rtts.len() < n {
                let msg = format!("pod{from}->pod{to} #{}", rtts.len());
                let t = Instant::now();
                udp.send_to(msg.as_bytes(), dst).unwrap();
                let mut buf = [0u8; 1500];
                match udp.recv_from(&mut buf) {
                    Ok((len, src)) => {
                        assert_eq!(&buf[..len], msg.as_bytes());
                        assert_eq!(src, dst, "the answer comes from the pod itself");
                        rtts.push(t.elapsed());
                    }
                    Err(e) => {
                        misses += 1;
                        assert!(
                            misses < 5,
                            "pod{from} ({}) → pod{to} ({target}) UDP: {e}",
                            pod_addr(from)
                        );
                    }
                }
            }
            rtts.sort();
            let t = Instant::now();
            let mut c = TcpStream::connect_timeout(&dst, Duration::from_secs(3))
                .unwrap_or_else(|e| panic!("pod{from} → pod{to} TCP: {e}"));
            assert_eq!(c.local_addr().unwrap().ip().to_string(), pod_addr(from));
            c.write_all(b"tcp echo").unwrap();
            let mut buf = [0u8; 8];
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            c.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"tcp echo");
            (rtts[0], rtts[rtts.len() / 2], t.elapsed())
        })
        .join()
        .unwrap()
    })
}

/// (rx, tx) packets of a device of node `i`.
fn packets(i: usize, dev: &str) -> (u64, u64) {
    let o = Command::new("ip")
        .args(["-n", &node(i), "-s", "-j", "link", "show", "dev", dev])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("ip -j");
    let s = &v[0]["stats64"];
    (
        s["rx"]["packets"].as_u64().unwrap(),
        s["tx"]["packets"].as_u64().unwrap(),
    )
}

/// Both tunnels of a node bound side by side: UDP 8472 and the chosen port, in its namespace.
fn bound_ports(i: usize) -> Vec<u16> {
    let o = Command::new("ip")
        .args(["netns", "exec", &node(i), "cat", "/proc/self/net/udp"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let local = l.split_whitespace().nth(1)?;
            u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
        })
        .collect()
}

/// The worker: runs in a private mount namespace (see the module comment).
fn worker() {
    // /run private to this mount namespace: `ip netns` names vanish with it.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make / private");
    nix::mount::mount(
        Some("tmpfs"),
        "/run",
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=755"),
    )
    .expect("tmpfs on /run");
    for ns in ["lan", "node0", "node1", "node2", "pod0", "pod1", "pod2"] {
        sh(&["ip", "netns", "add", ns]);
    }
    let setup = setup();
    println!(
        "rehearsal: setup of 3 nodes, 2 overlays, 3 pods: {:.1} ms",
        setup.as_secs_f64() * 1e3
    );
    if std::env::var_os(HOLD_ENV).is_some() {
        println!("rehearsal: holding");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_secs(600));
    }
    flannel_port_is_refused_to_a_second_overlay(0);
    println!(
        "rehearsal: a second VXLAN on flannel's UDP {FLANNEL_PORT} is refused (EADDRINUSE); Cilium's on {CILIUM_PORT} is up on every node"
    );
    for i in 0..3 {
        let ports = bound_ports(i);
        assert!(
            ports.contains(&FLANNEL_PORT) && ports.contains(&CILIUM_PORT),
            "node{i} binds both tunnels: {ports:?}"
        );
    }
    for i in 0..3 {
        serve(i);
    }
    // Migrated ↔ unmigrated, both ways; unmigrated ↔ unmigrated (flannel only) as the baseline.
    for (from, to, what) in [
        (
            MIGRATED,
            2,
            "migrated → unmigrated (out on flannel's overlay, back on Cilium's)",
        ),
        (
            2,
            MIGRATED,
            "unmigrated → migrated (out on Cilium's overlay, back on flannel's)",
        ),
        (MIGRATED, 0, "migrated → unmigrated server"),
        (0, 2, "unmigrated → unmigrated (flannel only)"),
    ] {
        let before = [
            packets(from, "flannel.1"),
            packets(from, "cilium_vxlan"),
            packets(to, "flannel.1"),
            packets(to, "cilium_vxlan"),
        ];
        let (min, median, tcp) = round_trips(from, to, 50);
        let after = [
            packets(from, "flannel.1"),
            packets(from, "cilium_vxlan"),
            packets(to, "flannel.1"),
            packets(to, "cilium_vxlan"),
        ];
        let d = |k: usize, rx: bool| {
            if rx {
                after[k].0 - before[k].0
            } else {
                after[k].1 - before[k].1
            }
        };
        // Each node routes by destination: to 10.42/16 over flannel.1, to Cilium's CIDR over
        // cilium_vxlan. The packet counters show which overlay carried each direction.
        let (fwd, back) = (
            if to == MIGRATED { 1 } else { 0 },
            if from == MIGRATED { 1 } else { 0 },
        );
        assert!(
            d(fwd, false) >= 50 && d(2 + fwd, true) >= 50,
            "{what}: out over {}",
            ["flannel.1", "cilium_vxlan"][fwd]
        );
        assert!(
            d(2 + back, false) >= 50 && d(back, true) >= 50,
            "{what}: back over {}",
            ["flannel.1", "cilium_vxlan"][back]
        );
        println!(
            "rehearsal: pod{from} {} → pod{to} {}: UDP rtt min {:.0} µs, median {:.0} µs over 50; TCP connect+echo {:.0} µs — {what}",
            pod_addr(from),
            pod_addr(to),
            min.as_secs_f64() * 1e6,
            median.as_secs_f64() * 1e6,
            tcp.as_secs_f64() * 1e6
        );
    }
    a_wrong_identity_is_dropped(2, MIGRATED);
    println!(
        "rehearsal: node{MIGRATED}'s overlay drops VNI {} (only identity {WORLD_ID} passes): the VNI carried the identity",
        WORLD_ID + 1
    );
    println!("rehearsal: ok");
}

fn spawn_worker(hold: bool) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private"])
        .arg(exe)
        .args([
            "--exact",
            "worker_entry",
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(WORKER_ENV, "1")
        .stdout(std::process::Stdio::piped());
    if hold {
        c.env(HOLD_ENV, "1");
    }
    // The worker dies with this test process, whatever kills it.
    unsafe {
        use std::os::unix::process::CommandExt;
        c.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    c.spawn().expect("unshare")
}

/// Not a test of its own: the body the rehearsal runs in the child (ignored unless spawned).
#[test]
#[ignore = "entry point of the rehearsal's child process; run by the tests below"]
fn worker_entry() {
    if std::env::var_os(WORKER_ENV).is_some() {
        worker();
    }
}

#[test]
#[cfg_attr(
    not(prereq = "root"),
    ignore = "needs root: network namespaces, tc, bpf()"
)]
fn a_pod_on_a_migrated_node_reaches_a_pod_on_an_unmigrated_node_and_back() {
    common::assert_root();
    let t = Instant::now();
    let child = spawn_worker(false);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "rehearsal failed:\n{text}");
    assert!(text.contains("rehearsal: ok"), "{text}");
    println!("rehearsal: whole run {:.2} s", t.elapsed().as_secs_f64());
}

/// Killed half way (SIGKILL to the child holding everything): every namespace it made is
/// freed, none of its devices is in this machine's namespace.
#[test]
#[cfg_attr(
    not(prereq = "root"),
    ignore = "needs root: network namespaces, tc, bpf()"
)]
fn a_killed_rehearsal_leaves_nothing_behind() {
    common::assert_root();
    let mut child = spawn_worker(true);
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("rehearsal: holding") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "worker ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let pid = child.id();
    // The worker's namespaces, through its own view of /run/netns.
    let held: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/root/run/netns"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .collect();
    assert_eq!(held.len(), 7, "lan, 3 nodes, 3 pods");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    // A namespace lives while a process is in it or a mount holds it: neither is left.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<u64> = held
            .iter()
            .copied()
            .filter(|ino| still_held(*ino))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "namespaces still held after the kill: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let own: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !own.iter().any(|n| n.starts_with("up")
            || n.starts_with("lxc")
            || n == "flannel.1"
            || n == "cilium_vxlan"),
        "{own:?}"
    );
}

/// Whether any process is in network namespace `ino` or any mount table holds it.
fn still_held(ino: u64) -> bool {
    let tag = format!("net:[{ino}]");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            let p = e.path();
            std::fs::metadata(p.join("ns/net"))
                .is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) == ino)
                || std::fs::read_to_string(p.join("mountinfo")).is_ok_and(|t| t.contains(&tag))
        })
}

/// The rehearsal uses what `plan --cluster` chose for the fixture cluster.
#[test]
fn plan_choices_are_what_the_rehearsal_uses() {
    let o = Command::new(env!("CARGO_BIN_EXE_preflight"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args([
            "plan",
            "--cluster",
            "fixtures/cluster/k3s-three-node/reports",
            "--cilium-version",
            "1.18.4",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("pod CIDR      {CILIUM_CIDR_PREFIX}.0.0/16")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "vxlan on UDP {CILIUM_PORT} (flannel keeps UDP {FLANNEL_PORT})"
        )),
        "{out}"
    );
}
