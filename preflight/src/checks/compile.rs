//! Checks over the datapath compile stage: the toolchain used, whether the agent's datapath
//! init will get to write its headers, each program's compile (with root cause and remedy), and
//! each object's load through the verifier.
use super::Check;
use crate::{
    compile::{
        CompileReport, ProgramResult,
        elf::{ObjectVerdict, Verdict},
        explain::Cause,
        toolchain::Fit,
    },
    facts::Facts,
    model::{
        Area,
        Capability::{self, *},
        Gathered, Outcome,
    },
};

/// (program, title, needed by).
const PROGRAMS: &[(&str, &str, &[Capability])] = &[
    ("bpf_lxc", "endpoint program (bpf_lxc.c)", &[BaseDatapath]),
    ("bpf_host", "host program (bpf_host.c)", &[BaseDatapath]),
    (
        "bpf_overlay",
        "overlay program (bpf_overlay.c)",
        &[TunnelVxlan, TunnelGeneve],
    ),
    (
        "bpf_sock",
        "socket LB programs (bpf_sock.c)",
        &[SocketLb, KubeProxyReplacement],
    ),
    ("bpf_xdp", "XDP program (bpf_xdp.c)", &[XdpAcceleration]),
    (
        "bpf_wireguard",
        "WireGuard program (bpf_wireguard.c)",
        &[WireGuard],
    ),
    ("bpf_network", "IPsec program (bpf_network.c)", &[Ipsec]),
    (
        "bpf_alignchecker",
        "struct alignment check (bpf_alignchecker.c)",
        &[BaseDatapath],
    ),
];

/// Why a program has no result: the agent does not build it here, or the tree lacks it.
fn absent(r: &CompileReport, name: &str) -> Outcome {
    match r.not_built.iter().find(|n| n.name == name) {
        Some(n) => Outcome::skip(format!("not built by the agent here: {}", n.why)),
        None => Outcome::skip(format!("{name}.c is not in the bpf dir")),
    }
}

/// The compile report, or the outcome every compile check gives without one (boxed: the
/// error is as large as an `Outcome`).
fn report(facts: &Facts) -> Result<&CompileReport, Box<Outcome>> {
    match &facts.compile {
        Gathered::Skipped(why) => Err(Box::new(Outcome::skip(why.clone()))),
        Gathered::Unknown(e) => Err(Box::new(Outcome::unknown(format!(
            "compile stage could not run: {e}"
        )))),
        Gathered::Got(r) => Ok(r),
    }
}

fn toolchain() -> Check {
    Check::new(
        "compile.toolchain",
        Area::Compile,
        "clang matching the LLVM bundled in the Cilium image",
    )
    .remedy("install the clang major the target's image bundles (named in the finding) or the nearest, or pass --clang")
    .evaluate(|facts, _| {
        let r = match report(facts) {
            Ok(r) => r,
            Err(o) => return *o,
        };
        let c = &r.toolchain;
        let detail = format!(
            "clang {} ({}) for Cilium {} (image bundles LLVM {})",
            c.toolchain.version,
            c.toolchain.clang.display(),
            r.profile.label(),
            c.wanted_major
        );
        let o = match (c.fit, &c.risk) {
            (Fit::Exact, _) | (_, None) => Outcome::pass(detail),
            (_, Some(risk)) => Outcome::warn(format!("{detail}: {risk}")),
        };
        o.evidence(format!(
            "found: {}",
            c.found
                .iter()
                .map(|t| format!("clang {}", t.version))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        // What the compile assumed about the node, so a verifier result can be read against it.
        .evidence(format!("datapath: {}", r.features.summary()))
    })
}

/// Which datapath was judged: the target's own tree, or the built-in templates (a model).
fn tree() -> Check {
    Check::new(
        "compile.tree",
        Area::Compile,
        "the datapath compiled is the target's own bpf tree",
    )
    .remedy(
        "give the target's tree: --image quay.io/cilium/cilium:v<version> (cached by digest, \
         offline afterwards), --image-archive FILE, --bpf-dir DIR or --bpf-tar FILE",
    )
    .evaluate(|facts, target| {
        let r = match report(facts) {
            Ok(r) => r,
            Err(o) => return *o,
        };
        let o = match r.tree.version_mismatch(&target.cilium_version.to_string()) {
            Some(why) => Outcome::warn(format!("{}; {why}", r.tree.describe())),
            None if r.tree.is_real() => Outcome::pass(r.tree.describe()),
            None => Outcome::warn(r.tree.describe()),
        };
        match &r.image_toolchain {
            Some(tc) if tc.used => o.evidence(format!(
                "compiled with the image's clang {} ({})",
                tc.version.as_deref().unwrap_or("?"),
                tc.clang
            )),
            Some(tc) => o.evidence(tc.why_not.clone().unwrap_or_default()),
            None => o,
        }
    })
}

fn init() -> Check {
    Check::new(
        "compile.init",
        Area::Compile,
        "datapath init gets to write state/globals/node_config.h",
    )
    .needed_by(&[BaseDatapath])
    .remedy("fix what stops datapath init (see detail), then restart cilium-agent")
    .evaluate(|facts, target| {
        let r = match report(facts) {
            Ok(r) => r,
            Err(o) => return *o,
        };
        if r.init_blockers.is_empty() {
            return Outcome::pass("nothing found that stops datapath init before node_config.h");
        }
        // docs/compile.md: a failed datapath init is fatal up to 1.16 and again from 1.19 (b22b49d6);
        // 1.17 and 1.18 carry on and compile endpoints against the dummy headers.
        let what_follows = if target.release().agent.init_failure_fatal {
            format!(
                "in Cilium {} this stops the agent (it restarts and fails the same way) before \
                 any endpoint compile; the compile results below show what follows once it is \
                 fixed",
                target.cilium_version
            )
        } else {
            format!(
                "Cilium {} carries on after this and compiles endpoints against the dummy \
                 headers: the compile failures below are what it hits",
                target.cilium_version
            )
        };
        let mut o = Outcome::fail(format!(
            "{}; {what_follows}",
            r.init_blockers
                .iter()
                .map(|b| b.detail.clone())
                .collect::<Vec<_>>()
                .join("; ")
        ))
        .remedy(
            r.init_blockers
                .iter()
                .map(|b| b.remedy.clone())
                .collect::<Vec<_>>()
                .join("; "),
        );
        for b in &r.init_blockers {
            o = o.evidence(b.evidence.clone());
        }
        o
    })
}

fn compile_outcome(p: &ProgramResult) -> Outcome {
    if p.compiled {
        let how = if p.cached {
            "compiled (object from the cache: same tree, headers, flags and clang)".to_string()
        } else {
            format!("compiled in {:.0} ms", p.wall_ms)
        };
        return Outcome::pass(how).evidence(&p.command);
    }
    let summary = crate::compile::explain::grouped(&p.findings)
        .iter()
        .map(|(subjects, why, _)| format!("{subjects} — {why}"))
        .collect::<Vec<_>>()
        .join(" | ");
    let remedies: Vec<String> =
        p.findings
            .iter()
            .map(|f| f.remedy.clone())
            .fold(Vec::new(), |mut acc, r| {
                if !acc.contains(&r) {
                    acc.push(r);
                }
                acc
            });
    // A clang newer than the image's LLVM failing on old sources is our mismatch, not the node's.
    let only_toolchain = !p.findings.is_empty()
        && p.findings
            .iter()
            .all(|f| matches!(f.cause, Cause::ClangTooNew { .. }));
    // Every finding a header the agent never gets to write because datapath init fails:
    // fixing compile.init fixes this program too (the verdict's "GO after plan" counts on it).
    let only_init = !p.findings.is_empty()
        && p.findings.iter().all(|f| {
            matches!(&f.cause, Cause::GeneratedHeaderMissing { init_blockers, .. }
                if !init_blockers.is_empty())
        });
    let mut o = if only_toolchain {
        Outcome::warn(format!("toolchain mismatch, not a node problem: {summary}"))
    } else {
        Outcome::fail(summary)
    };
    if only_init {
        o = o.follows("compile.init");
    }
    if !remedies.is_empty() {
        o = o.remedy(remedies.join("; "));
    }
    for f in &p.findings {
        for s in &f.sites {
            o = o.evidence(s.clone());
        }
    }
    o = o.evidence(match &p.libclang_fallback {
        Some(why) => format!(
            "diagnostics from {} (not libclang: {why})",
            p.diagnostics_from
        ),
        None => format!("diagnostics from {}", p.diagnostics_from),
    });
    o.evidence(&p.command)
}

fn verifier_outcome(p: &ProgramResult, v: &ObjectVerdict, kernel: &str) -> Outcome {
    if let Some(e) = &v.object_error {
        return Outcome::fail(format!("the object does not load: {e}"));
    }
    let rejected: Vec<_> = v.rejected().collect();
    if let Some(first) = rejected.first() {
        let Verdict::Rejected { log_tail, error } = &first.verdict else {
            unreachable!("filtered on Rejected")
        };
        // The verifier's last line is its reason, in its own words.
        let why = log_tail.lines().rev().find(|l| {
            !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
        });
        let mut o = Outcome::fail(format!(
            "kernel {kernel} rejects {} of {} programs: {} ({} {}): {}",
            rejected.len(),
            v.programs.len(),
            rejected
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            first.section,
            first.prog_type,
            why.unwrap_or(error)
        ));
        for l in log_tail.lines() {
            o = o.evidence(format!("verifier ({}): {l}", first.name));
        }
        return o;
    }
    let unknown: Vec<_> = v
        .programs
        .iter()
        .filter_map(|pv| match &pv.verdict {
            Verdict::Unknown { reason } => Some(format!("{}: {reason}", pv.name)),
            _ => None,
        })
        .collect();
    if !unknown.is_empty() {
        return Outcome::unknown(format!("could not tell: {}", unknown.join("; ")));
    }
    let insns: u32 = v.programs.iter().filter_map(|p| p.verified_insns).sum();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let (programs, tail_calls) = (v.programs.len(), v.tail_calls.len());
    let mut o = Outcome::pass(format!(
        "{programs} program{} loaded ({insns} insns processed by the verifier), {tail_calls} tail \
         call{} wired",
        plural(programs),
        plural(tail_calls)
    ));
    for s in &v.unknown_sections {
        o = o.evidence(format!(
            "section {} not loaded (unknown program type): {}",
            s.section,
            s.functions.join(", ")
        ));
    }
    for n in &v.notes {
        o = o.evidence(n.clone());
    }
    o.evidence(format!(
        "{} bytes, maps: {}",
        p.object.as_ref().map(|o| o.size).unwrap_or(0),
        p.object
            .as_ref()
            .map(|o| o.maps.join(", "))
            .unwrap_or_default()
    ))
}

pub fn checks() -> Vec<Check> {
    let mut checks = vec![toolchain(), tree(), init()];
    for (name, title, needed_by) in PROGRAMS {
        checks.push(
            Check::new(
                format!("compile.{name}"),
                Area::Compile,
                format!("compile {title}"),
            )
            .needed_by(needed_by)
            .remedy("see the finding: the root cause names the header or toolchain to fix")
            .evaluate(move |facts, _| {
                let r = match report(facts) {
                    Ok(r) => r,
                    Err(o) => return *o,
                };
                match r.program(name) {
                    Some(p) => compile_outcome(p),
                    None => absent(r, name),
                }
            }),
        );
        checks.push(
            Check::new(
                format!("compile.verifier.{name}"),
                Area::Compile,
                format!("kernel verifier accepts the {title}"),
            )
            .needed_by(needed_by)
            .remedy("a newer kernel, or a Cilium version whose datapath this kernel accepts")
            .evaluate(move |facts, _| {
                let r = match report(facts) {
                    Ok(r) => r,
                    Err(o) => return *o,
                };
                let Some(p) = r.program(name) else {
                    return absent(r, name);
                };
                match (&p.verify, &p.verify_skipped) {
                    (None, Some(why))
                        if p.kind == crate::compile::agent_facts::ProgramKind::AlignChecker =>
                    {
                        Outcome::skip(why.clone())
                    }
                    (Some(v), _) => verifier_outcome(
                        p,
                        v,
                        facts
                            .kernel_release
                            .as_deref()
                            .unwrap_or("(release unknown)"),
                    ),
                    (None, Some(why)) if why == "not compiled" => {
                        Outcome::skip("did not compile; see the compile check")
                    }
                    // Under a --root that is not this kernel's the kernel is not the node's:
                    // not asking it is by design, like every other live check there.
                    (None, Some(why)) if !facts.live => Outcome::skip(why.clone()),
                    (None, why) => Outcome::unknown(format!(
                        "not loaded: {}",
                        why.as_deref().unwrap_or("no reason given")
                    )),
                }
            }),
        );
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        compile::{
            elf::{ProgramVerdict, verdict::UnknownSection},
            libclang::Source,
        },
        model::Status,
    };

    fn program(verify: ObjectVerdict) -> ProgramResult {
        ProgramResult {
            name: "bpf_xdp".into(),
            kind: crate::compile::agent_facts::ProgramKind::Base,
            compiled: true,
            command: "clang ...".into(),
            wall_ms: 1.0,
            cached: false,
            load_config: None,
            findings: Vec::new(),
            diagnostics: Vec::new(),
            diagnostics_from: Source::Text,
            libclang_fallback: None,
            object: None,
            verify: Some(verify),
            verify_skipped: None,
        }
    }

    fn verdict(name: &str, verdict: Verdict) -> ProgramVerdict {
        ProgramVerdict {
            name: name.into(),
            section: "xdp/entry".into(),
            prog_type: "xdp".into(),
            attach_type: None,
            tail_call: None,
            verdict,
            verified_insns: Some(30),
            xlated_bytes: None,
            insns: 40,
            load_ms: 0.1,
            verification_us: None,
        }
    }

    #[test]
    fn a_rejection_names_the_kernel_the_programs_and_the_verifiers_reason() {
        let v = ObjectVerdict {
            programs: vec![
                verdict(
                    "cil_xdp_entry",
                    Verdict::Rejected {
                        log_tail: "32: (85) call bpf_xdp_adjust_meta#54\nprogram of this type \
                                   cannot use helper bpf_xdp_adjust_meta#54\nverification time \
                                   114 usec\nstack depth 8\nprocessed 30 insns"
                            .into(),
                        error: "Invalid argument (os error 22)".into(),
                    },
                ),
                verdict("tail_lb_ipv4", Verdict::Loaded),
            ],
            ..ObjectVerdict::default()
        };
        let p = program(v.clone());
        let o = verifier_outcome(&p, &v, "6.18.44");
        assert_eq!(o.status, Status::Fail);
        assert_eq!(
            o.detail,
            "kernel 6.18.44 rejects 1 of 2 programs: cil_xdp_entry (xdp/entry xdp): program of \
             this type cannot use helper bpf_xdp_adjust_meta#54"
        );
        assert!(
            o.evidence
                .iter()
                .any(|e| e.starts_with("verifier (cil_xdp_entry): 32:"))
        );
    }

    #[test]
    fn loaded_objects_pass_and_unknown_sections_are_evidence() {
        let v = ObjectVerdict {
            programs: vec![verdict("cil_xdp_entry", Verdict::Loaded)],
            unknown_sections: vec![UnknownSection {
                section: "weird".into(),
                functions: vec!["f".into()],
            }],
            ..ObjectVerdict::default()
        };
        let o = verifier_outcome(&program(v.clone()), &v, "6.18.44");
        assert_eq!(o.status, Status::Pass);
        assert!(
            o.detail.starts_with("1 program loaded (30 insns"),
            "{}",
            o.detail
        );
        assert!(
            o.evidence
                .iter()
                .any(|e| e.contains("section weird not loaded"))
        );
        let eperm = ObjectVerdict {
            programs: vec![verdict(
                "cil_xdp_entry",
                Verdict::Unknown {
                    reason: "EPERM".into(),
                },
            )],
            ..ObjectVerdict::default()
        };
        assert_eq!(
            verifier_outcome(&program(eperm.clone()), &eperm, "6.18").status,
            Status::Unknown
        );
    }
}
