//! Structured diagnostics through libclang (loaded at run time) against the text parser, on the
//! compile scenario fixtures, with Debian's clang-16/19 and libclang1-16/19 (scripts/setup.sh).
mod common;

use std::path::{Path, PathBuf};

use common::compile_fixture as fixture;

use preflight::{
    cilium::Target,
    compile::{
        self, CompileReport, Options, StateSource,
        diag::{self, Diagnostic},
        explain::Cause,
        libclang::{self, Mode, Source},
        runner,
    },
    host::HostRoot,
};

fn options(scenario: &str, version: &str, clang: Option<&str>) -> Options {
    let mut o = Options::new(Target::chart_defaults(version));
    o.cache = preflight::compile::cache::CacheMode::Dir(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("preflight-objects"),
    );
    o.state = StateSource::Predict(HostRoot::new(fixture(scenario)));
    o.clang = clang.map(PathBuf::from);
    o.verify = false;
    o
}

fn run(o: &Options) -> CompileReport {
    compile::run(o).expect("compile stage runs")
}

fn redefined(r: &CompileReport, program: &str) -> Vec<String> {
    r.program(program)
        .unwrap()
        .findings
        .iter()
        .filter(|f| f.kind == "macro-redefined")
        .filter_map(|f| f.subject.clone())
        .collect()
}

/// What the missing-node_config.h scenario must explain, whichever source the diagnostics
/// came from.
fn assert_missing_header_explained(r: &CompileReport) {
    let lxc = redefined(r, "bpf_lxc");
    let host = redefined(r, "bpf_host");
    assert!(lxc.contains(&"CALLS_MAP".into()) && lxc.contains(&"ENABLE_ARP_RESPONDER".into()));
    assert!(!lxc.contains(&"MONITOR_AGGREGATION".into()), "{lxc:?}");
    assert!(
        host.contains(&"CALLS_MAP".into())
            && host.contains(&"ENABLE_ARP_RESPONDER".into())
            && host.contains(&"MONITOR_AGGREGATION".into()),
        "{host:?}"
    );
    for f in r.all_findings().filter(|f| f.kind == "macro-redefined") {
        assert!(
            matches!(&f.cause, Cause::GeneratedHeaderMissing { missing, init_blockers, .. }
                if missing.ends_with("globals/node_config.h")
                    && init_blockers.iter().any(|b| b.contains("8472"))),
            "{}: {:?}",
            f.program,
            f.cause
        );
        assert_eq!(f.sites.len(), 2, "{:?}", f.sites);
        assert!(
            f.sites
                .iter()
                .any(|s| s.contains("<built-in templates>/node_config.h"))
        );
        assert!(f.sites.iter().any(|s| s.contains("ep_config.h")));
    }
}

#[test]
#[cfg_attr(
    not(all(prereq = "clang-19", prereq = "libclang-19")),
    ignore = "needs clang-19 and libclang1-19 (scripts/setup.sh)"
)]
fn libclang_reads_the_missing_header_scenario_with_both_definition_sites() {
    let r = run(&options("missing-node-config", "1.18.4", None));
    for program in ["bpf_lxc", "bpf_host"] {
        let p = r.program(program).unwrap();
        assert!(!p.compiled);
        assert_eq!(p.diagnostics_from, Source::Libclang(19), "{program}");
        assert!(p.libclang_fallback.is_none(), "{:?}", p.libclang_fallback);
        for d in &p.diagnostics {
            assert_eq!(d.flag.as_deref(), Some("-Wmacro-redefined"), "{d:?}");
            assert!(d.is_error() && d.message.ends_with("macro redefined"));
            let here = d.location.as_ref().expect("location");
            // The child diagnostic: the other definition, with its own location.
            assert_eq!(d.notes.len(), 1, "{d:?}");
            let note = &d.notes[0];
            assert_eq!(note.message, "previous definition is here");
            let before = note.location.as_ref().expect("note location");
            let files = [here.file.as_str(), before.file.as_str()];
            assert!(files.iter().any(|f| f.ends_with("/bpf/node_config.h")));
            assert!(files.iter().any(|f| f.ends_with("/ep_config.h")));
            assert!(here.line > 0 && here.col > 0 && before.line > 0);
            // The include stack, outermost first, from libclang's inclusion walk.
            assert_eq!(
                d.included_from.first().map(|l| l.file.as_str()),
                Some(format!("{program}.c").as_str())
            );
        }
    }
    let host = r.program("bpf_host").unwrap();
    let monitor = host
        .diagnostics
        .iter()
        .find(|d| d.subject() == Some("MONITOR_AGGREGATION"))
        .expect("MONITOR_AGGREGATION redefined in host");
    assert!(monitor.notes[0].location.as_ref().unwrap().line > 0);
    // Programs that compiled cleanly never needed libclang.
    let sock = r.program("bpf_sock").unwrap();
    assert!(sock.compiled && sock.diagnostics.is_empty());
    assert_eq!(sock.diagnostics_from, Source::Text);
    assert!(r.timings.libclang_parse_ms > 0.0);
    assert_missing_header_explained(&r);
    // The run's check names the source in its evidence.
    let empty = tempfile::tempdir().unwrap();
    let mut facts = preflight::facts::Facts::from_root(empty.path());
    facts.live = true;
    facts.compile = preflight::model::Gathered::Got(r.clone());
    let results = preflight::checks::run_all(&facts, &Target::default(), &[]);
    let lxc = results.iter().find(|c| c.id == "compile.bpf_lxc").unwrap();
    assert!(
        lxc.evidence
            .iter()
            .any(|e| e == "diagnostics from libclang 19"),
        "{:?}",
        lxc.evidence
    );
}

/// (file, line, flag, message) of each diagnostic, then (file, line, message) of its notes.
fn keys(diags: &[Diagnostic]) -> Vec<String> {
    let at = |d: &Diagnostic| {
        d.location
            .as_ref()
            .map(|l| format!("{}:{}:{}", l.file, l.line, l.col))
            .unwrap_or_else(|| "-".into())
    };
    let mut out = Vec::new();
    for d in diags {
        out.push(format!(
            "{:?} {} {} {}",
            d.severity,
            at(d),
            d.flag.as_deref().unwrap_or("-"),
            d.message
        ));
        for n in &d.notes {
            out.push(format!("  note {} {}", at(n), n.message));
        }
    }
    out
}

#[test]
#[cfg_attr(
    not(all(
        prereq = "clang-19",
        prereq = "libclang-19",
        prereq = "clang-16",
        prereq = "libclang-16"
    )),
    ignore = "needs clang-16, clang-19 and their libclang1 (scripts/setup.sh)"
)]
fn text_parser_and_libclang_agree_on_the_scenario_set() {
    // Scenario, target, clang: both majors, errors and warnings-as-errors, the 1.14 clang | llc
    // command line (libclang gets it without -emit-llvm / -o -).
    let scenarios = [
        ("missing-node-config", "1.18.4", None),
        ("stale-node-config", "1.16.5", None),
        ("clean", "1.16.5", Some("/usr/bin/clang-19")),
        ("missing-node-config", "1.14.19", None),
    ];
    let mut compared = Vec::new();
    for (scenario, version, clang) in scenarios {
        let prepared = compile::prepare(&options(scenario, version, clang)).unwrap();
        let toolchain = &prepared.report.toolchain.toolchain;
        let lib = libclang::open(&Mode::Auto, toolchain).expect("libclang of the clang's major");
        assert_eq!(lib.major, toolchain.major);
        for job in &prepared.jobs {
            let outcome = runner::run_one(job);
            let text = diag::parse(&outcome.stderr);
            if outcome.success && text.is_empty() {
                continue;
            }
            let structured = libclang::diagnostics(&lib, job).expect("libclang parses");
            assert!(!text.is_empty(), "{scenario} {}", job.program);
            assert_eq!(
                keys(&text),
                keys(&structured),
                "{scenario} {version} {}: text (left) vs libclang {} (right)",
                job.program,
                lib.major
            );
            compared.push((scenario, version, job.program.clone(), lib.major));
        }
    }
    eprintln!("compared {} programs: {compared:?}", compared.len());
    // Every scenario produced diagnostics to compare, with both libclang majors.
    for (scenario, version, _) in scenarios {
        assert!(
            compared
                .iter()
                .any(|(s, v, ..)| *s == scenario && *v == version),
            "{scenario} {version}: nothing compared"
        );
    }
    assert!(compared.iter().any(|c| c.3 == 16) && compared.iter().any(|c| c.3 == 19));
}

#[test]
#[cfg_attr(
    not(all(
        prereq = "clang-19",
        prereq = "libclang-19",
        prereq = "clang-16",
        prereq = "libclang-16"
    )),
    ignore = "needs clang-16, clang-19 and their libclang1 (scripts/setup.sh)"
)]
fn without_a_matching_libclang_the_text_parser_still_explains_the_root_cause() {
    let cases = [
        (
            Mode::Library("/nonexistent/libclang-19.so.1".into()),
            "/nonexistent/libclang-19.so.1",
        ),
        (Mode::Off, "--libclang off"),
        // libclang 16 for a clang-19 compile: another major warns and words things differently.
        (
            Mode::Library("/usr/lib/llvm-16/lib/libclang-16.so.1".into()),
            "is libclang 16, the compile used clang 19",
        ),
    ];
    for (mode, why) in cases {
        let mut o = options("missing-node-config", "1.18.4", None);
        o.libclang = mode.clone();
        let r = run(&o);
        for program in ["bpf_lxc", "bpf_host"] {
            let p = r.program(program).unwrap();
            assert_eq!(p.diagnostics_from, Source::Text, "{mode:?}");
            let fallback = p.libclang_fallback.as_deref().unwrap_or_default();
            assert!(fallback.contains(why), "{mode:?}: {fallback}");
        }
        assert_missing_header_explained(&r);
    }
}

/// A one-file job in a scratch dir, as runner::job builds them.
fn job(dir: &Path, clang: &str, source: &str, extra: &[&str]) -> runner::Job {
    std::fs::write(dir.join("prog.c"), source).unwrap();
    let mut args: Vec<String> = ["-O2", "--target=bpf", "-fno-color-diagnostics"]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
    args.extend(["-c", "prog.c", "-o", "/dev/null"].map(String::from));
    runner::Job {
        kind: preflight::compile::agent_facts::ProgramKind::Base,
        cache_key: None,
        cache_paths: Vec::new(),
        program: "prog".into(),
        cwd: dir.to_path_buf(),
        output: PathBuf::from("/dev/null"),
        clang: PathBuf::from(clang),
        clang_args: args,
        llc: None,
        weight: 0,
    }
}

#[test]
#[cfg_attr(
    not(all(
        prereq = "clang-19",
        prereq = "libclang-19",
        prereq = "clang-16",
        prereq = "libclang-16"
    )),
    ignore = "needs clang-16, clang-19 and their libclang1 (scripts/setup.sh)"
)]
fn errors_libclang_cannot_see_keep_clangs_text() {
    let (dir, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The BPF backend's argument limit: code generation, after the front end libclang runs.
    let six_args = "int g(int a, int b, int c, int d, int e, int f);\n\
                    int h(void) { return g(1, 2, 3, 4, 5, 6); }\n";
    let backend = job(dir.path(), "/usr/bin/clang-19", six_args, &[]);
    // A CPU clang 16 does not know: the target cannot be created.
    let cpu = job(dir2.path(), "/usr/bin/clang-16", "int x;\n", &["-mcpu=v9"]);
    for (job, major, expect) in [
        (backend, 19, "too many arguments"),
        (cpu, 16, "unknown target CPU 'v9'"),
    ] {
        let toolchain = compile::toolchain::inspect(&job.clang).unwrap();
        let lib = libclang::open(&Mode::Auto, &toolchain);
        assert_eq!(lib.as_ref().map(|l| l.major).ok(), Some(major));
        let outcome = runner::run_one(&job);
        assert!(!outcome.success);
        let text = diag::parse(&outcome.stderr);
        let chosen = libclang::choose(Some(&lib), &job, false, text);
        assert!(
            chosen
                .diagnostics
                .iter()
                .any(|d| d.message.contains(expect)),
            "{expect}: {:?}",
            chosen.diagnostics
        );
        match chosen.from {
            // libclang may report the CPU itself; the backend error it cannot.
            Source::Libclang(m) => assert_eq!((m, expect.contains("CPU")), (major, true)),
            Source::Text => {
                let why = chosen.fallback.as_deref().unwrap_or_default();
                let wanted = if expect.contains("CPU") {
                    "no translation unit"
                } else {
                    "code generation"
                };
                assert!(why.contains(wanted), "{why}");
            }
        }
        eprintln!(
            "{expect}: from {} ({:?})",
            chosen.from,
            chosen.fallback.unwrap_or_default()
        );
    }
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// Lines that make the diagnostics this stage meets: redefinitions across headers, undeclared
/// identifiers, -Werror'd conversions, macro expansion notes, #warning, fatal errors.
const FRAGMENTS: &[&str] = &[
    "#define CALLS_MAP cilium_calls_65535",
    "#define CALLS_MAP test_cilium_calls_65535",
    "#ifndef MONITOR_AGGREGATION\n#define MONITOR_AGGREGATION 5\n#endif",
    "#define MONITOR_AGGREGATION 3",
    "#include \"a.h\"",
    "#include \"b.h\"",
    "#define USE(x) ((x) + CT_REPORT_INTERVAL)",
    "static inline int f(void) { return USE(1); }",
    "static inline unsigned int g(unsigned long long v) { return v; }",
    "static inline int h(int a) { int a2 = a; return a2 + UNDECLARED; }",
    "#warning this is a warning",
    "#if 0\n#include \"missing.h\"\n#endif",
    "#include \"missing.h\"",
    "int shadowed; static inline int s(int shadowed) { return shadowed; }",
    "typedef unknown_t t;",
    "static int unused_fn(void) { return 0; }",
    "",
];

#[test]
#[cfg_attr(
    not(all(
        prereq = "clang-19",
        prereq = "libclang-19",
        prereq = "clang-16",
        prereq = "libclang-16"
    )),
    ignore = "needs clang-16, clang-19 and their libclang1 (scripts/setup.sh)"
)]
fn differential_fuzz_text_parser_against_libclang() {
    let iterations: usize = std::env::var("LIBCLANG_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let mut rng = Rng(0x5eed_1ab5);
    let libs = [16, 19].map(|major| {
        let t = compile::toolchain::inspect(Path::new(&format!("/usr/bin/clang-{major}"))).unwrap();
        libclang::open(&Mode::Auto, &t).unwrap()
    });
    let (mut compared, mut with_errors) = (0, 0);
    for i in 0..iterations {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.h", "b.h"] {
            let lines: Vec<&str> = (0..1 + rng.next() % 4)
                .map(|_| rng.pick(FRAGMENTS))
                // A header never includes itself (endless recursion is not a case we meet).
                .filter(|l| !l.contains(&format!("\"{name}\"")))
                .collect();
            std::fs::write(dir.path().join(name), lines.join("\n") + "\n").unwrap();
        }
        let source: Vec<&str> = (0..1 + rng.next() % 6)
            .map(|_| rng.pick(FRAGMENTS))
            .collect();
        let lib = &libs[i % 2];
        let clang = format!("/usr/bin/clang-{}", lib.major);
        // -Werror on half the programs, so plain warnings are compared too.
        let werror = if i % 4 < 2 { "-Werror" } else { "-Wno-error" };
        let flags = [
            "-Wall",
            "-Wextra",
            werror,
            "-Wshadow",
            "-Wimplicit-int-conversion",
            "-Wno-unused-function",
            "-nostdinc",
            "-fno-caret-diagnostics",
        ];
        let j = job(dir.path(), &clang, &source.join("\n"), &flags);
        let outcome = runner::run_one(&j);
        let text = diag::parse(&outcome.stderr);
        if text.is_empty() {
            continue;
        }
        let structured = libclang::diagnostics(lib, &j).expect("libclang parses");
        assert_eq!(
            keys(&text),
            keys(&structured),
            "iteration {i}, clang {}:\n{}\n-- a.h --\n{}\n-- b.h --\n{}",
            lib.major,
            source.join("\n"),
            std::fs::read_to_string(dir.path().join("a.h")).unwrap(),
            std::fs::read_to_string(dir.path().join("b.h")).unwrap()
        );
        compared += 1;
        with_errors += usize::from(text.iter().any(Diagnostic::is_error));
    }
    eprintln!(
        "differential fuzz: {iterations} programs, {compared} with diagnostics compared \
         ({with_errors} with errors), no disagreement"
    );
    assert!(
        compared > iterations / 2,
        "too few programs with diagnostics"
    );
}

#[test]
#[cfg_attr(
    not(all(prereq = "clang-19", prereq = "libclang-19")),
    ignore = "needs clang-19 and libclang1-19 (scripts/setup.sh)"
)]
fn where_the_text_is_ambiguous_libclang_is_exact() {
    // A message that itself ends in "[-W...]": the text parser cannot tell it from clang's
    // flag suffix; libclang reports message and option separately.
    let dir = tempfile::tempdir().unwrap();
    let j = job(
        dir.path(),
        "/usr/bin/clang-19",
        "#error boom [-Wfake]\n",
        &[],
    );
    let text = diag::parse(&runner::run_one(&j).stderr);
    assert_eq!(
        (text[0].message.as_str(), text[0].flag.as_deref()),
        ("boom", Some("-Wfake"))
    );
    let toolchain = compile::toolchain::inspect(&j.clang).unwrap();
    let lib = libclang::open(&Mode::Auto, &toolchain).unwrap();
    let structured = libclang::diagnostics(&lib, &j).unwrap();
    assert_eq!(
        (
            structured[0].message.as_str(),
            structured[0].flag.as_deref()
        ),
        ("boom [-Wfake]", None)
    );
}
