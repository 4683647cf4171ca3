//! `preflight probe` and `preflight run` against the real kernel (root), and as an unprivileged
//! user (everything "unknown" with a reason, never "unavailable").
mod common;

use common::{bin, json};

fn status<'a>(v: &'a serde_json::Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for key in path {
        cur = &cur[*key];
    }
    cur["status"]
        .as_str()
        .unwrap_or_else(|| panic!("no status at {path:?}: {cur}"))
}

fn probe_json(args: &[&str]) -> serde_json::Value {
    let out = bin()
        .arg("probe")
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out)
}

/// Issue 2's "done when", on the default command: `preflight probe --format json`.
#[test]
fn default_probe_json_on_this_kernel() {
    require_root!();
    let v = probe_json(&[]);
    assert_eq!(v["schema_version"], 1);
    for prog in ["sched_cls", "xdp", "cgroup_sock_addr", "socket_filter"] {
        assert_eq!(status(&v, &["program_types", prog]), "available", "{prog}");
    }
    // Every program type is answered by default, not only Cilium's.
    for prog in ["tracing", "lsm", "kprobe", "perf_event", "syscall"] {
        assert!(v["program_types"][prog]["status"].is_string(), "{prog}");
    }
    // The verifier's post-6.10 wording: socket filters may not write packets.
    assert_eq!(
        status(&v, &["helpers", "socket_filter", "skb_store_bytes"]),
        "unavailable"
    );
    assert_eq!(
        status(&v, &["helpers", "sched_cls", "skb_store_bytes"]),
        "available"
    );
    assert_eq!(
        status(&v, &["helpers", "sched_cls", "redirect_neigh"]),
        "available"
    );
    for misc in [
        "isa_v2",
        "isa_v3",
        "large_insn_limit",
        "bounded_loops",
        "vmlinux_btf",
    ] {
        assert_eq!(status(&v, &["misc", misc]), "available", "{misc}");
    }
    assert_eq!(status(&v, &["map_types", "lru_hash"]), "available");
    assert_eq!(status(&v, &["map_types", "lpm_trie"]), "available");
    // Helpers stay Cilium's: --all is what probes thousands.
    let filter = v["helpers"]["socket_filter"].as_object().unwrap();
    assert!(filter.len() < 20, "{} socket_filter helpers", filter.len());
}

/// JIT always-on comes from the kernel config, as `run` reads it: the probe and the
/// bpf.misc.jit_always_on check agree, and a config we cannot see is unknown, not "off".
#[test]
fn jit_always_on_agrees_with_the_kernel_config_and_the_run_check() {
    require_root!();
    let v = probe_json(&[]);
    let jit = &v["misc"]["jit_always_on"];
    let config = std::process::Command::new("sh")
        .args([
            "-c",
            "zcat /proc/config.gz 2>/dev/null || cat /boot/config-$(uname -r)",
        ])
        .output()
        .unwrap();
    let config = String::from_utf8_lossy(&config.stdout);
    let expected = if config.trim().is_empty() {
        "unknown"
    } else if config.lines().any(|l| l == "CONFIG_BPF_JIT_ALWAYS_ON=y") {
        "available"
    } else {
        "unavailable"
    };
    assert_eq!(jit["status"], expected, "{jit}");
    let run = json(
        &bin()
            .args(["run", "--no-canaries", "--no-compile", "--format", "json"])
            .output()
            .unwrap(),
    );
    let check = run["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "bpf.misc.jit_always_on")
        .unwrap();
    // Not set is informational (pass); only "could not tell" is unknown, in both.
    let want = if expected == "unknown" {
        "unknown"
    } else {
        "pass"
    };
    assert_eq!(check["status"], want, "{check}");
}

#[test]
fn all_probe_json_on_this_kernel() {
    require_root!();
    let v = probe_json(&["--all"]);
    // Map types outside Cilium's are answered too.
    assert!(
        v["map_types"]["arena"]["status"].is_string(),
        "{}",
        v["map_types"]
    );
    // Helpers exist for some types and not others: the answer must not be "all available".
    let filter = v["helpers"]["socket_filter"].as_object().unwrap();
    let available = filter
        .values()
        .filter(|s| s["status"] == "available")
        .count();
    assert!(
        available > 30 && available < filter.len() - 50,
        "socket_filter: {available}/{}",
        filter.len()
    );
    assert_eq!(
        status(&v, &["helpers", "socket_filter", "skb_store_bytes"]),
        "unavailable"
    );
}

/// On this machine loading a tracing program fails with EPERM and an empty log even as root:
/// that is "could not tell", not "unavailable". Elsewhere it may be available; never unavailable.
/// The default probe answers it, as `--all` does.
#[test]
fn tracing_is_never_reported_unavailable_on_eperm() {
    require_root!();
    for args in [&[][..], &["--all"][..]] {
        let v = probe_json(args);
        let tracing = &v["program_types"]["tracing"];
        match tracing["status"].as_str().unwrap() {
            "unknown" => assert!(
                tracing["reason"]
                    .as_str()
                    .unwrap()
                    .contains("not permitted"),
                "{args:?}: {tracing}"
            ),
            "available" => {}
            other => panic!("{args:?}: tracing reported {other}: {tracing}"),
        }
    }
}

#[test]
fn run_reports_every_canary_passing_and_exits_go() {
    require_root!();
    let out = bin().args(["run", "--format", "json"]).output().unwrap();
    let v = json(&out);
    let checks = v["checks"].as_array().unwrap();
    for canary in [
        "tc",
        "tcx",
        "xdp",
        "tail_call",
        "lru_hash",
        "lpm_trie",
        "cgroup_sock_addr",
        "bpffs_pin",
    ] {
        let id = format!("attach.{canary}");
        let check = checks
            .iter()
            .find(|c| c["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(check["status"], "pass", "{check}");
        assert!(check["detail"].as_str().unwrap().len() > 10, "{check}");
    }
    assert_eq!(v["schema_version"], 1);
    assert!(v["timings"]["total_ms"].as_f64().unwrap() > 0.0);
    let go = v["verdict"]["go"].as_bool().unwrap();
    assert_eq!(
        out.status.code(),
        Some(if go { 0 } else { 1 }),
        "{}",
        v["verdict"]
    );
}

/// Runs a command as `nobody` with no capabilities.
fn as_nobody(args: &[&str]) -> Option<std::process::Output> {
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let out = std::process::Command::new(setpriv)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_preflight"))
        .args(args)
        .output()
        .ok()?;
    // The build tree may not be readable by nobody (e.g. a private home directory).
    if String::from_utf8_lossy(&out.stderr).contains("Permission denied") && out.stdout.is_empty() {
        return None;
    }
    Some(out)
}

#[test]
fn unprivileged_probe_is_undecided_exit_2_and_never_reports_unavailable() {
    require_root!(); // needs root to become nobody
    let Some(out) = as_nobody(&["probe", "--format", "json"]) else {
        eprintln!("SKIP: setpriv missing or binary not executable by nobody");
        return;
    };
    // Without CAP_BPF/CAP_SYS_ADMIN every answer would be "could not tell": the probe says so
    // once, prints no table that could be read as "unavailable", and exits 2 (undecided).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("CAP_BPF"), "{stderr}");
    assert!(stderr.contains("nothing was probed"), "{stderr}");
}

#[test]
fn unprivileged_run_is_undecided_exit_2_with_unknown_checks() {
    require_root!();
    let Some(out) = as_nobody(&["run", "--format", "json"]) else {
        eprintln!("SKIP: setpriv missing or binary not executable by nobody");
        return;
    };
    let v = json(&out);
    assert_eq!(out.status.code(), Some(2), "verdict: {}", v["verdict"]);
    assert_eq!(v["verdict"]["decided"], false);
    let checks = v["checks"].as_array().unwrap();
    let status_of = |id: &str| checks.iter().find(|c| c["id"] == id).unwrap()["status"].clone();
    assert_eq!(status_of("bpf.prog_type.sched_cls"), "unknown");
    assert_eq!(status_of("attach.tc"), "unknown");
    // Failing for lack of privilege is forbidden; facts that fail for everyone (a kernel config
    // option that is not set) fail as root too.
    let as_root = json(&bin().args(["run", "--format", "json"]).output().unwrap());
    let failing = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "fail")
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let only_unprivileged: Vec<_> = failing(&v)
        .difference(&failing(&as_root))
        .cloned()
        .collect();
    assert!(
        only_unprivileged.is_empty(),
        "no check may fail for lack of privilege: {only_unprivileged:?}"
    );
}

/// Loads every program of a canary object (no attach) and returns, per program, what the kernel
/// says about its licence (`bpf_prog_info.gpl_compatible`).
fn load_all(object: &[u8]) -> std::collections::BTreeMap<String, Option<bool>> {
    use aya::programs::Program;
    let mut ebpf = aya::EbpfLoader::new()
        .btf(None)
        .load(object)
        .unwrap_or_else(|e| panic!("loading the object: {e}"));
    let mut out = std::collections::BTreeMap::new();
    for (name, program) in ebpf.programs_mut() {
        match program {
            Program::SchedClassifier(p) => p.load(),
            Program::Xdp(p) => p.load(),
            Program::CgroupSockAddr(p) => p.load(),
            other => panic!("{name}: unexpected program type {:?}", other.prog_type()),
        }
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        out.insert(name.to_string(), program.info().unwrap().gpl_compatible());
    }
    out
}

/// A copy of `object` whose licence section says `licence` instead: the same length, since aya
/// reads the section as one NUL-terminated string.
fn with_licence(object: &[u8], licence: &[u8]) -> Vec<u8> {
    use object::{Object, ObjectSection};
    let elf = object::File::parse(object).unwrap();
    let (offset, size) = elf
        .section_by_name("license")
        .unwrap()
        .file_range()
        .unwrap();
    let (offset, size) = (offset as usize, size as usize);
    assert_eq!(
        licence.len(),
        size,
        "{:?}",
        String::from_utf8_lossy(licence)
    );
    let mut patched = object.to_vec();
    patched[offset..offset + size].copy_from_slice(licence);
    patched
}

/// The licence story, from the kernel itself: the canaries declare a licence the kernel counts as
/// GPL-compatible ("Dual MIT/GPL"), and they load just as well under a non-GPL one, because
/// none of the helpers they call is GPL-only (a GPL-only helper would be refused: "cannot call
/// GPL-restricted function from non-GPL compatible program").
#[test]
fn canary_objects_are_gpl_compatible_and_call_no_gpl_only_helper() {
    require_root!();
    use preflight::probe::canary::{LOG_OBJECT, OBJECT};
    use preflight_ebpf_common::programs;
    let every = |answer| -> std::collections::BTreeMap<String, Option<bool>> {
        programs::ALL
            .iter()
            .map(|p| (p.to_string(), Some(answer)))
            .collect()
    };
    for (build, object) in [("default", OBJECT), ("logging", LOG_OBJECT)] {
        assert_eq!(load_all(object), every(true), "{build}");
        // An SPDX licence the kernel does not count as GPL-compatible, as long as "Dual MIT/GPL".
        let non_gpl = with_licence(object, b"BSD-3-Clause\0");
        assert_eq!(load_all(&non_gpl), every(false), "{build}, non-GPL");
    }
}

/// Issue 16: at -vv the canary programs report what they saw (aya-log, relayed as tracing debug
/// events); at the default level and at -v nothing of it is printed, and the logging build
/// passes the same checks.
#[test]
fn at_vv_the_canaries_say_what_they_saw_and_are_silent_otherwise() {
    require_root!();
    const TARGET: &str = preflight::probe::canary::EBPF_LOG_TARGET;
    let run = |verbosity: &[&str]| {
        let out = bin()
            .args(["run", "--no-compile", "--format", "json"])
            .args(verbosity)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (json(&out), stderr)
    };
    let (report, stderr) = run(&["-vv"]);
    let saw: Vec<&str> = stderr.lines().filter(|l| l.contains(TARGET)).collect();
    for what in [
        "tc ingress: IPv4 from 10.1.2.3, new in FLOWS: yes, matched in PREFIXES: yes",
        "tc ingress: IPv4 from 10.1.2.3, new in FLOWS: no, matched in PREFIXES: yes",
        "tail call arrived: frame of",
        "tcx egress: frame of",
        "xdp: frame of",
        "connect4: to 127.0.0.1:9",
        "sendmsg4: to 127.0.0.1:9",
    ] {
        assert!(
            saw.iter().any(|l| l.contains(what)),
            "no `{what}` at -vv:\n{}",
            saw.join("\n")
        );
    }
    assert!(!stderr.contains("aya-log off"), "{stderr}");
    for check in report["checks"].as_array().unwrap() {
        if check["id"].as_str().unwrap().starts_with("attach.") {
            assert_eq!(check["status"], "pass", "logging build: {check}");
        }
    }
    for quieter in [&[][..], &["-v"][..]] {
        let (_, stderr) = run(quieter);
        assert!(!stderr.contains(TARGET), "{quieter:?}: {stderr}");
    }
}

/// At -vv on a kernel that cannot load the logging build (before 5.8 it cannot create aya-log's
/// ring buffer) the worker notes why and runs the default build: the canaries are still answered.
/// Here a truncated logging object stands in for the refusal; the default object loads for real.
#[test]
fn a_logging_build_that_does_not_load_falls_back_to_the_default_one() {
    require_root!();
    use preflight::probe::canary::{
        LOG_OBJECT, OBJECT,
        worker::{Collected, load},
    };
    let collected = Collected::default();
    let broken = &LOG_OBJECT[..LOG_OBJECT.len() / 2];
    let (ebpf, logger) = load(broken, OBJECT, Some(&collected)).expect("default object loads");
    assert!(logger.is_none());
    assert!(ebpf.map(preflight_ebpf_common::maps::AYA_LOGS).is_none());
    assert!(ebpf.program("canary_tc").is_some());
    let records = collected.into_records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(
        records[0]
            .message
            .starts_with("aya-log off: the logging build of the canaries did not load ("),
        "{records:?}"
    );
}
