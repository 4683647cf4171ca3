//! From clang diagnostics to findings with a root cause and a remedy. The causes are the ones seen
//! in the field (docs/upstream.md#datapath-compile, #the-calls_map-incident): a generated header
//! missing so the dummy in the bpf dir was used, a stale generated header written by another Cilium
//! version, two generated headers disagreeing, a clang too new for the target's sources, an -mcpu
//! this clang does not know.
use std::{
    collections::BTreeSet,
    path::{Component, Path, PathBuf},
};

use serde::Serialize;

use super::{
    NodeConfigState,
    diag::{Diagnostic, Location},
    headers::StateLayout,
    nodeinit::InitBlocker,
    profile::Profile,
};

pub struct Context<'a> {
    pub bpf_dir: &'a Path,
    pub state: &'a StateLayout,
    pub profile: &'a Profile,
    /// The target's minor as the user knows it (`1.20`; the profile's is its compile generation).
    pub target: String,
    pub clang_major: u32,
    pub blockers: &'a [InitBlocker],
    /// The macros the target's agent writes into node_config.h for this tree.
    pub node_macros: &'a BTreeSet<String>,
    /// How the node_config.h in the state dir was judged.
    pub node_config: &'a NodeConfigState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "kebab-case")]
pub enum Cause {
    /// A generated header was not where the agent writes it, so the dummy was used.
    GeneratedHeaderMissing {
        missing: String,
        dummy: String,
        /// Datapath-init failures that stop the agent before it writes the header.
        init_blockers: Vec<String>,
    },
    /// A generated header from another Cilium version (or one that lacks what these sources
    /// need).
    StaleHeader {
        header: String,
        written_by: Option<String>,
        target: String,
        /// Macros the sources use that the target's agent writes and this header lacks.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        lacks: Vec<String>,
        /// The header is the node's own (a leftover): the remedy may delete it.
        from_node: bool,
    },
    HeadersDisagree {
        first: String,
        second: String,
    },
    ClangTooNew {
        clang_major: u32,
        target: String,
        /// The LLVM the target's image bundles (e.g. 17.0.6 for 1.16).
        image_llvm: String,
    },
    UnsupportedCpu {
        cpu: String,
        clang_major: u32,
    },
    /// clang refuses a flag the agent passes for this version, or lacks a BTF/CO-RE builtin the
    /// sources use: the toolchain is older than the one the target was built for.
    ClangTooOld {
        what: String,
        clang_major: u32,
        bundled_llvm: u32,
        target: String,
    },
    Unexplained,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub program: String,
    /// What clang said, e.g. `macro-redefined`, `undeclared-identifier`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub message: String,
    /// Where: the diagnostic's location and its notes' (e.g. the previous definition).
    pub sites: Vec<String>,
    #[serde(flatten)]
    pub cause: Cause,
    pub explanation: String,
    pub remedy: String,
}

impl Finding {
    /// Names scratch paths as the node's: the state dir preflight modelled in a temp dir is the
    /// node's /var/run/cilium/state, its unpacked templates the image's /var/lib/cilium/bpf. A
    /// remedy must point at files the user can act on.
    pub fn relabel(&mut self, from: &str, to: &str) {
        let fix = |s: &mut String| {
            if s.contains(from) {
                *s = s.replace(from, to);
            }
        };
        fix(&mut self.message);
        self.sites.iter_mut().for_each(fix);
        fix(&mut self.explanation);
        fix(&mut self.remedy);
        match &mut self.cause {
            Cause::GeneratedHeaderMissing { missing, dummy, .. } => {
                fix(missing);
                fix(dummy);
            }
            Cause::StaleHeader { header, .. } => fix(header),
            Cause::HeadersDisagree { first, second } => {
                fix(first);
                fix(second);
            }
            Cause::ClangTooNew { .. }
            | Cause::UnsupportedCpu { .. }
            | Cause::ClangTooOld { .. }
            | Cause::Unexplained => {}
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Site {
    Dummy(String),
    Generated(PathBuf),
    CommandLine,
    Source,
}

/// `a/./b/../c` → `a/c` without touching the filesystem (the files may be gone).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn resolve(ctx: &Context, loc: &Location) -> PathBuf {
    normalise(&ctx.bpf_dir.join(&loc.file))
}

fn classify(ctx: &Context, loc: &Location) -> Site {
    if loc.file == "<command line>" || loc.file == "<built-in>" {
        return Site::CommandLine;
    }
    let path = resolve(ctx, loc);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if path.parent() == Some(&normalise(ctx.bpf_dir)) && ctx.state.generated_for(&name).is_some() {
        Site::Dummy(name)
    } else if path.starts_with(normalise(&ctx.state.root)) {
        Site::Generated(path)
    } else {
        Site::Source
    }
}

fn missing_header(ctx: &Context, dummy: &str) -> Cause {
    let missing = ctx
        .state
        .generated_for(dummy)
        .unwrap_or_default()
        .display()
        .to_string();
    Cause::GeneratedHeaderMissing {
        missing,
        dummy: ctx.bpf_dir.join(dummy).display().to_string(),
        init_blockers: ctx.blockers.iter().map(|b| b.detail.clone()).collect(),
    }
}

fn stale(ctx: &Context, header: &Path) -> Cause {
    let is_node_config = header == ctx.state.node_config();
    let n = ctx.node_config;
    Cause::StaleHeader {
        header: header.display().to_string(),
        written_by: if is_node_config {
            n.written_by.clone()
        } else {
            None
        },
        target: ctx.target.clone(),
        lacks: if is_node_config {
            n.lacks.clone()
        } else {
            Vec::new()
        },
        from_node: !is_node_config || n.from_node,
    }
}

/// What explains a header mix-up when clang gives no second site: the state of node_config.h.
fn node_config_cause(ctx: &Context) -> Option<Cause> {
    match ctx.node_config.status.as_str() {
        "missing" => Some(missing_header(ctx, "node_config.h")),
        "stale" => Some(stale(ctx, &ctx.state.node_config())),
        _ => None,
    }
}

/// Whether a diagnostic sits in node_config.h or in something it included.
fn in_node_config(ctx: &Context, d: &Diagnostic) -> bool {
    let node = ctx.state.node_config();
    d.location
        .iter()
        .chain(d.included_from.iter())
        .any(|l| resolve(ctx, l) == node)
}

fn cause_of(ctx: &Context, d: &Diagnostic) -> (String, Cause) {
    let flag = d.flag.as_deref().unwrap_or("");
    if flag == "-Wmacro-redefined" || d.message.ends_with("macro redefined") {
        let here = d.location.as_ref().map(|l| classify(ctx, l));
        let before = d
            .notes
            .iter()
            .find_map(|n| n.location.as_ref())
            .map(|l| classify(ctx, l));
        let cause = match (here, before) {
            (Some(Site::Dummy(n)), _) | (_, Some(Site::Dummy(n))) => missing_header(ctx, &n),
            // A stale node_config.h against anything: the stale header.
            (Some(Site::Generated(a)), _) | (_, Some(Site::Generated(a)))
                if ctx.node_config.is_stale() && a == ctx.state.node_config() =>
            {
                stale(ctx, &a)
            }
            (Some(Site::Generated(a)), Some(Site::Generated(b))) => Cause::HeadersDisagree {
                first: b.display().to_string(),
                second: a.display().to_string(),
            },
            (Some(Site::Generated(g)), _) | (_, Some(Site::Generated(g))) => stale(ctx, &g),
            _ => Cause::Unexplained,
        };
        return ("macro-redefined".into(), cause);
    }
    if d.message.starts_with("use of undeclared identifier")
        || d.message.starts_with("unknown type name")
    {
        let kind = if d.message.starts_with("unknown type") {
            "unknown-type"
        } else {
            "undeclared-identifier"
        };
        // A name the target's agent writes into node_config.h: that header is missing or
        // stale (it lacks the name).
        let expected_from_header = d.subject().is_some_and(|s| ctx.node_macros.contains(s));
        let cause = if expected_from_header || in_node_config(ctx, d) {
            node_config_cause(ctx).unwrap_or(Cause::Unexplained)
        } else {
            Cause::Unexplained
        };
        return (kind.into(), cause);
    }
    if flag == "-Wshorten-64-to-32" && ctx.profile.clang_breaks(ctx.clang_major) {
        return (
            "shorten-64-to-32".into(),
            Cause::ClangTooNew {
                clang_major: ctx.clang_major,
                target: ctx.profile.label(),
                image_llvm: ctx.profile.bundled_llvm_version.to_string(),
            },
        );
    }
    if d.message.starts_with("unknown target CPU") {
        return (
            "unsupported-cpu".into(),
            Cause::UnsupportedCpu {
                cpu: d.subject().unwrap_or("?").to_string(),
                clang_major: ctx.clang_major,
            },
        );
    }
    if let Some((kind, what)) = too_old(d) {
        return (
            kind.into(),
            Cause::ClangTooOld {
                what,
                clang_major: ctx.clang_major,
                bundled_llvm: ctx.profile.bundled_llvm,
                target: ctx.profile.label(),
            },
        );
    }
    let kind = flag
        .strip_prefix("-W")
        .map(str::to_string)
        .unwrap_or_else(|| "error".into());
    if ctx.node_config.is_stale() && in_node_config(ctx, d) {
        return (kind, stale(ctx, &ctx.state.node_config()));
    }
    (kind, Cause::Unexplained)
}

/// clang's own words for "I am too old for this": a command-line flag it does not know (the
/// agent's flags grow with the version, e.g. -ftrap-function in 1.18), or a BTF/CO-RE builtin
/// or attribute it does not have.
fn too_old(d: &Diagnostic) -> Option<(&'static str, String)> {
    let m = d.message.as_str();
    let quoted = || {
        d.subject()
            .map(str::to_string)
            .unwrap_or_else(|| m.to_string())
    };
    if m.starts_with("unknown argument") || m.starts_with("unsupported option") {
        return Some(("unsupported-flag", format!("the flag {}", quoted())));
    }
    const CO_RE: &[&str] = &[
        "preserve_access_index",
        "__builtin_preserve",
        "__builtin_btf_type_id",
        "btf_type_tag",
        "btf_decl_tag",
    ];
    CO_RE
        .iter()
        .find(|w| m.contains(*w))
        .map(|w| ("btf-core-unsupported", format!("the BTF/CO-RE feature {w}")))
}

fn explain(cause: &Cause, d: &Diagnostic) -> (String, String) {
    match cause {
        Cause::GeneratedHeaderMissing {
            missing,
            dummy,
            init_blockers,
        } => {
            let why = if init_blockers.is_empty() {
                "the agent's datapath init did not write it (fresh node, or init failed: tunnel \
                 port held by flannel.1, bpffs, rp_filter sysctl)"
                    .to_string()
            } else {
                format!(
                    "the agent's datapath init will fail before writing it: {}",
                    init_blockers.join("; ")
                )
            };
            // No per-macro text: the same cause reads the same for every macro it hits.
            (
                format!(
                    "{missing} is missing, so the include path fell through to the dummy {dummy}; \
                     its test definitions collide with the generated headers and per-program \
                     flags: unguarded ones always, guarded defaults when the dummy is included \
                     first. Cause: {why}"
                ),
                if init_blockers.is_empty() {
                    "let the agent's datapath init complete (check its log for the first error), \
                     or restart it so it regenerates the header; Helm cleanState=true wipes a \
                     half-written state"
                        .into()
                } else {
                    "fix the init failure first (see the compile.init check), then restart \
                     cilium-agent so it writes the header"
                        .into()
                },
            )
        }
        Cause::StaleHeader {
            header,
            written_by,
            target,
            lacks,
            from_node,
        } => {
            let by = written_by
                .as_deref()
                .map(|v| format!("{v}, judged from its macros"))
                .unwrap_or_else(|| "an agent whose version cannot be told from its macros".into());
            let lacking = if lacks.is_empty() {
                String::new()
            } else {
                let shown: Vec<&str> = lacks.iter().take(8).map(String::as_str).collect();
                format!(
                    "; it lacks {} macro{} the Cilium {target} agent writes and these sources use \
                     ({}{})",
                    lacks.len(),
                    if lacks.len() == 1 { "" } else { "s" },
                    shown.join(", "),
                    if lacks.len() > shown.len() {
                        ", …"
                    } else {
                        ""
                    }
                )
            };
            let remedy = if *from_node {
                format!(
                    "delete the stale header (rm {header}) or set Helm cleanState=true for one \
                     rollout, and make sure only one Cilium version runs on the node (e.g. \
                     RKE2's bundled chart and a Helm install share /var/run/cilium)"
                )
            } else {
                "give the state dir the target's own headers (e.g. preflight compile \
                 --emit-state DIR for this version) or let the agent rewrite them"
                    .into()
            };
            (
                format!(
                    "{header} is stale: written by {by}, but the target is Cilium \
                     {target}{lacking}. These errors come from that header"
                ),
                remedy,
            )
        }
        Cause::HeadersDisagree { first, second } => (
            format!(
                "two generated headers disagree: {first} and {second} both define the same \
                 macro differently"
            ),
            "wipe the state dir (Helm cleanState=true) so the agent regenerates all headers \
             from one configuration"
                .into(),
        ),
        Cause::ClangTooNew {
            clang_major,
            target,
            image_llvm,
        } => (
            format!(
                "clang too new: clang {clang_major} reports -Wshorten-64-to-32 as part of \
                 -Wimplicit-int-conversion; Cilium {target} sources predate that, and the LLVM \
                 the Cilium {target} image bundles ({image_llvm}) does not flag it. This is a \
                 toolchain mismatch here, not a node problem"
            ),
            "compile with clang 14-18 (Debian: apt install clang-16) or pass --clang; the real \
             agent uses the LLVM in its image"
                .into(),
        ),
        Cause::UnsupportedCpu { cpu, clang_major } => (
            format!("clang {clang_major} does not know -mcpu={cpu}"),
            "use a clang that supports it (v4 needs clang 18+), or let preflight pick -mcpu from \
             the kernel probes"
                .into(),
        ),
        Cause::ClangTooOld {
            what,
            clang_major,
            bundled_llvm,
            target,
        } => (
            format!(
                "clang {clang_major} does not support {what}, which Cilium {target}'s datapath \
                 build uses (its image bundles LLVM {bundled_llvm}): the toolchain here is too \
                 old, not the node ({})",
                d.message
            ),
            format!(
                "compile with clang {bundled_llvm} or newer (Debian: apt install \
                 clang-{bundled_llvm}; then --clang /usr/bin/clang-{bundled_llvm}); the real \
                 agent uses the LLVM in its image"
            ),
        ),
        Cause::Unexplained => (
            format!("clang: {}", d.message),
            "read the diagnostic and its location; if the sources are unmodified Cilium sources \
             this points at a header or toolchain mix-up not modelled here"
                .into(),
        ),
    }
}

/// Findings for one program's diagnostics: one per (kind, subject), errors only.
pub fn findings(ctx: &Context, program: &str, diagnostics: &[Diagnostic]) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for d in diagnostics.iter().filter(|d| d.is_error()) {
        let (kind, mut cause) = cause_of(ctx, d);
        // With node_config.h missing the dummy's definitions feed everything after them (a
        // dummy `THIS_INTERFACE_MAC` pasted into the endpoint's `DEFINE_MAC`, switches the
        // agent would set left unset): an error nothing else explains follows from it.
        if cause == Cause::Unexplained && ctx.node_config.status == "missing" {
            cause = missing_header(ctx, "node_config.h");
        }
        let subject = d.subject().map(str::to_string);
        if out
            .iter()
            .any(|f| f.kind == kind && f.subject == subject && f.cause == cause)
        {
            continue;
        }
        let mut sites: Vec<String> = d.location.iter().map(|l| l.to_string()).collect();
        sites.extend(
            d.notes
                .iter()
                .filter_map(|n| n.location.as_ref().map(|l| format!("{l} ({})", n.message))),
        );
        let (explanation, remedy) = explain(&cause, d);
        out.push(Finding {
            program: program.to_string(),
            kind,
            subject,
            message: d.message.clone(),
            sites,
            cause,
            explanation,
            remedy,
        });
    }
    out
}

/// Kinds whose subject names the culprit (a macro, an identifier, a type): listed by name.
const NAMED_KINDS: &[&str] = &[
    "macro-redefined",
    "undeclared-identifier",
    "unknown-type",
    "shorten-64-to-32",
];

/// Findings grouped by what explains them: one entry per (explanation, remedy) with the names
/// it hits (`macro redefined: CALLS_MAP, ENABLE_ARP_RESPONDER; 9 further errors (e.g. …)`),
/// so the same explanation is never printed once per macro. Returns (subjects, why, fix).
pub fn grouped(findings: &[Finding]) -> Vec<(String, String, String)> {
    let mut groups: Vec<(Vec<&Finding>, &str, &str)> = Vec::new();
    for f in findings {
        match groups
            .iter_mut()
            .find(|g| g.1 == f.explanation && g.2 == f.remedy)
        {
            Some(g) => g.0.push(f),
            None => groups.push((vec![f], &f.explanation, &f.remedy)),
        }
    }
    groups
        .into_iter()
        .map(|(members, why, fix)| {
            let mut named: Vec<(String, Vec<String>)> = Vec::new();
            let mut others: Vec<&Finding> = Vec::new();
            for f in members {
                match (&f.subject, NAMED_KINDS.contains(&f.kind.as_str())) {
                    (Some(subject), true) => {
                        let kind = f.kind.replace('-', " ");
                        match named.iter_mut().find(|(k, _)| *k == kind) {
                            Some((_, names)) if !names.contains(subject) => {
                                names.push(subject.clone())
                            }
                            Some(_) => {}
                            None => named.push((kind, vec![subject.clone()])),
                        }
                    }
                    _ => others.push(f),
                }
            }
            let mut parts: Vec<String> = named
                .into_iter()
                .map(|(kind, mut names)| {
                    names.sort();
                    format!("{kind}: {}", names.join(", "))
                })
                .collect();
            if let Some(first) = others.first() {
                let n = others.len();
                let label = if parts.is_empty() {
                    if n == 1 { "error" } else { "errors" }
                } else if n == 1 {
                    "further error"
                } else {
                    "further errors"
                };
                parts.push(if n == 1 {
                    format!("{label}: {}", first.message)
                } else {
                    format!("{n} {label} (first: {})", first.message)
                });
            }
            (parts.join("; "), why.to_string(), fix.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{diag::parse, profile::for_minor};

    fn layout() -> StateLayout {
        StateLayout::new(PathBuf::from("/s"), "abc".into())
    }

    static NO_MACROS: std::sync::LazyLock<BTreeSet<String>> =
        std::sync::LazyLock::new(BTreeSet::new);
    static PRESENT: std::sync::LazyLock<NodeConfigState> =
        std::sync::LazyLock::new(|| NodeConfigState {
            status: "present".into(),
            ..Default::default()
        });

    fn ctx<'a>(state: &'a StateLayout, profile: &'a Profile, clang: u32) -> Context<'a> {
        Context {
            bpf_dir: Path::new("/b"),
            state,
            profile,
            target: format!("1.{}", profile.minor),
            clang_major: clang,
            blockers: &[],
            node_macros: &NO_MACROS,
            node_config: &PRESENT,
        }
    }

    #[test]
    fn dummy_site_means_the_generated_header_is_missing() {
        let (s, p) = (layout(), for_minor(18));
        let d = parse(
            "./node_config.h:22:9: error: 'CALLS_MAP' macro redefined [-Werror,-Wmacro-redefined]\n\
             /s/templates/abc/ep_config.h:5:9: note: previous definition is here\n",
        );
        let f = findings(&ctx(&s, &p, 19), "bpf_lxc", &d);
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].cause,
            Cause::GeneratedHeaderMissing {
                missing: "/s/globals/node_config.h".into(),
                dummy: "/b/node_config.h".into(),
                init_blockers: vec![],
            }
        );
        assert!(
            f[0].explanation.contains("flannel.1"),
            "names the usual init failures"
        );
    }

    #[test]
    fn two_generated_sites_disagree_and_command_line_against_dummy_is_missing() {
        let (s, p) = (layout(), for_minor(18));
        let d = parse(
            "/s/templates/abc/ep_config.h:3:9: error: 'X' macro redefined [-Werror,-Wmacro-redefined]\n\
             /s/globals/node_config.h:4:9: note: previous definition is here\n\
             ./node_config.h:22:9: error: 'CALLS_MAP' macro redefined [-Werror,-Wmacro-redefined]\n\
             <command line>:1:9: note: previous definition is here\n",
        );
        let f = findings(&ctx(&s, &p, 19), "bpf_overlay", &d);
        assert!(matches!(f[0].cause, Cause::HeadersDisagree { .. }));
        assert!(matches!(f[1].cause, Cause::GeneratedHeaderMissing { .. }));
        assert!(f[1].sites[1].starts_with("<command line>:1:9"));
    }

    #[test]
    fn unknown_flags_and_missing_co_re_builtins_mean_clang_is_too_old() {
        let (s, p) = (layout(), for_minor(18));
        let flag = parse("clang: error: unknown argument: '-ftrap-function=__undefined_trap'\n");
        let f = findings(&ctx(&s, &p, 14), "bpf_lxc", &flag);
        assert_eq!(f[0].kind, "unsupported-flag");
        assert!(matches!(
            &f[0].cause,
            Cause::ClangTooOld { what, clang_major: 14, bundled_llvm: 19, .. }
                if what.contains("-ftrap-function")
        ));
        assert!(f[0].remedy.contains("clang 19 or newer"), "{}", f[0].remedy);
        let core = parse(
            "./lib/x.h:3:5: error: unknown attribute 'preserve_access_index' ignored [-Werror,-Wunknown-attributes]\n",
        );
        let f = findings(&ctx(&s, &p, 10), "bpf_lxc", &core);
        assert_eq!(f[0].kind, "btf-core-unsupported");
        assert!(f[0].explanation.contains("too old"), "{}", f[0].explanation);
    }

    #[test]
    fn cpu_and_shorten_and_unexplained() {
        let (s, p16, p18) = (layout(), for_minor(16), for_minor(18));
        let cpu = parse("error: unknown target CPU 'v9'\n");
        let f = findings(&ctx(&s, &p18, 16), "bpf_lxc", &cpu);
        assert_eq!(
            f[0].cause,
            Cause::UnsupportedCpu {
                cpu: "v9".into(),
                clang_major: 16
            }
        );
        let shorten = parse(
            "./lib/ct.h:46:29: error: implicit conversion loses integer precision: 'unsigned long long' to '__u32' [-Werror,-Wshorten-64-to-32]\n",
        );
        let f = findings(&ctx(&s, &p16, 19), "bpf_lxc", &shorten);
        assert!(matches!(f[0].cause, Cause::ClangTooNew { .. }));
        // The same error on 1.18 sources is not the known mismatch: say so, do not guess.
        let f = findings(&ctx(&s, &p18, 19), "bpf_lxc", &shorten);
        assert_eq!(f[0].cause, Cause::Unexplained);
        assert_eq!(f[0].kind, "shorten-64-to-32");
        // Warnings are not findings; duplicates collapse.
        let d = parse(
            "a.c:1:1: warning: x [-Wfoo]\nb.c:1:1: error: 'Y' macro redefined\nb.c:2:1: error: 'Y' macro redefined\n",
        );
        assert_eq!(findings(&ctx(&s, &p18, 19), "p", &d).len(), 1);
    }
}
