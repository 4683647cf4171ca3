//! The ELF loader (compile/elf) on small objects built here with clang-19, one convention per
//! test: load-time configuration reaching the verifier (both styles), tail calls wired and
//! pruned (numbered and tagged sections), BPF-to-BPF calls with a global function, cgroup
//! sections with their attach types, map-in-map, pinning in the private bpffs, unknown sections.
//!
//! The verifier is the judge: with a frozen `.rodata.config` it prunes branches on the known
//! value, so a program that reads out of bounds unless `magic == 42` loads only when 42 reached
//! the kernel. As root every load is real; otherwise the loader must say "unknown" (EPERM).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use preflight::compile::elf::{LoadOptions, Loader, ObjectVerdict, Verdict, load_object};

const CLANG: &str = "/usr/bin/clang-19";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Common prelude: no kernel headers, our own declarations.
const PRELUDE: &str = r#"
typedef unsigned int __u32;
typedef unsigned long long __u64;
#define SEC(x) __attribute__((section(x), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]
#define __stringify_1(X) #X
#define __stringify(X) __stringify_1(X)
struct __sk_buff { __u32 len; };
struct bpf_sock_addr { __u32 user_family; };
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
#define tail_call_static(CTX, MAP, SLOT) \
	asm volatile("r1 = %[ctx]\n\tr2 = " __stringify(MAP) " ll\n\tr3 = %[slot]\n\tcall 12\n\t" \
		     :: [ctx] "r"(CTX), [slot] "i"(SLOT) : "r0", "r1", "r2", "r3", "r4", "r5")
char __license[] SEC("license") = "GPL";
"#;

fn build(dir: &Path, name: &str, body: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, format!("{PRELUDE}\n{body}")).unwrap();
    let obj = dir.join(format!("{name}.o"));
    let out = Command::new(CLANG)
        .args(["-O2", "-g", "--target=bpf", "-mcpu=v3", "-Wall", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .expect("clang-19 runs (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    obj
}

fn status(v: &ObjectVerdict, program: &str) -> &'static str {
    match &v
        .program(program)
        .unwrap_or_else(|| panic!("{program} in {v:#?}"))
        .verdict
    {
        Verdict::Loaded => "loaded",
        Verdict::Rejected { .. } => "rejected",
        Verdict::Unknown { .. } => "unknown",
    }
}

/// As root: the status given; otherwise the loader must not pretend: unknown, because EPERM.
fn expect(v: &ObjectVerdict, program: &str, as_root: &str) {
    let want = if is_root() { as_root } else { "unknown" };
    assert_eq!(status(v, program), want, "{program}: {v:#?}");
}

fn config(name: &str, value: u32) -> LoadOptions {
    let mut o = LoadOptions::default();
    o.config.insert(name.into(), value.to_le_bytes().to_vec());
    o
}

const MAP_STYLE_CONFIG: &str = r#"
SEC(".rodata.config") volatile const __u32 __config_magic = 7;
SEC("tc/entry") int entry(struct __sk_buff *ctx)
{
	if (__config_magic == 42)
		return 0;
	return *(volatile int *)((char *)ctx + 4096);
}
"#;

#[test]
fn load_time_configuration_reaches_the_verifier_in_the_map_style() {
    let dir = tempfile::tempdir().unwrap();
    let obj = build(dir.path(), "cfg_map", MAP_STYLE_CONFIG);
    let default = load_object(&obj, &LoadOptions::default());
    assert_eq!(default.config.style, "map");
    expect(&default, "entry", "rejected");
    let set = load_object(&obj, &config("magic", 42));
    assert_eq!(set.config.applied, ["magic"]);
    expect(&set, "entry", "loaded");
    // The prefix is accepted, unknown names and oversized values are reported, not applied.
    let mut o = config("__config_magic", 42);
    o.config.insert("nope".into(), vec![1]);
    o.config.insert("magic2".into(), vec![0; 9]);
    let v = load_object(&obj, &o);
    assert_eq!(v.config.applied, ["magic"]);
    assert_eq!(v.config.unknown, ["magic2", "nope"]);
    let mut o = LoadOptions::default();
    o.config.insert("magic".into(), vec![0; 8]);
    assert_eq!(load_object(&obj, &o).config.invalid.len(), 1);
}

#[test]
fn load_time_configuration_is_inlined_in_the_1_16_style() {
    // Cilium <= 1.16: `static const` in .rodata.config, read by an inline-asm ld_imm64.
    let dir = tempfile::tempdir().unwrap();
    let obj = build(
        dir.path(),
        "cfg_inline",
        r#"
SEC(".rodata.config") static const __u32 __config_MAGIC = 7;
#define CONFIG(n) ({ __u64 out; asm volatile("%[out] = __config_" #n " ll" : [out] "=r"(out)); (__u32)out; })
SEC("tc") int entry(struct __sk_buff *ctx)
{
	if (CONFIG(MAGIC) == 42)
		return 0;
	return *(volatile int *)((char *)ctx + 4096);
}
"#,
    );
    let default = load_object(&obj, &LoadOptions::default());
    assert_eq!(default.config.style, "inline");
    expect(&default, "entry", "rejected");
    let set = load_object(&obj, &config("MAGIC", 42));
    expect(&set, "entry", "loaded");
    // Inlined: no .rodata.config map is created.
    assert!(
        set.maps.iter().all(|m| m.name != ".rodata.config"),
        "{set:#?}"
    );
}

#[test]
fn numbered_tail_call_sections_fill_the_legacy_map_and_unreached_ones_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let obj = build(
        dir.path(),
        "tails_legacy",
        r#"
struct bpf_elf_map { __u32 type, size_key, size_value, max_elem, flags, id, pinning, inner_id, inner_idx; };
struct bpf_elf_map SEC("maps") calls_7 = { .type = 3, .size_key = 4, .size_value = 4, .max_elem = 8, .id = 2, .pinning = 16 };
SEC("2/1") int tail_one(struct __sk_buff *ctx) { return 1; }
SEC("2/0x2") int tail_unreached(struct __sk_buff *ctx) { return 2; }
SEC("tc") int entry(struct __sk_buff *ctx)
{
	tail_call_static(ctx, calls_7, 1);
	return 0;
}
"#,
    );
    let v = load_object(&obj, &LoadOptions::default());
    assert!(v.object_error.is_none(), "{v:#?}");
    let one = v.program("tail_one").unwrap();
    assert_eq!(
        (one.prog_type.as_str(), one.section.as_str()),
        ("sched_cls", "2/1")
    );
    assert_eq!(
        one.tail_call.as_ref().map(|s| (s.map.as_str(), s.slot)),
        Some(("calls_7", 1))
    );
    assert_eq!(v.pruned.len(), 1);
    assert_eq!(v.pruned[0].name, "tail_unreached");
    assert!(v.program("tail_unreached").is_none());
    expect(&v, "entry", "loaded");
    expect(&v, "tail_one", "loaded");
    if is_root() {
        assert_eq!(v.tail_calls.len(), 1);
        assert_eq!(
            (v.tail_calls[0].map.as_str(), v.tail_calls[0].slot),
            ("calls_7", 1)
        );
        let m = v.maps.iter().find(|m| m.name == "calls_7").unwrap();
        assert_eq!(m.pinning, "pinned after load (replace)");
    }
}

#[test]
fn tagged_tail_calls_and_renames_follow_the_1_18_convention() {
    let dir = tempfile::tempdir().unwrap();
    let obj = build(
        dir.path(),
        "tails_tagged",
        r#"
struct {
	__uint(type, 3);
	__uint(key_size, 4);
	__uint(max_entries, 8);
	__uint(pinning, 16);
	__array(values, int ());
} cilium_calls SEC(".maps");
#define __declare_tail(N) SEC("tc/tail") __attribute__((btf_decl_tag("tail:cilium_calls/" __stringify(N))))
__declare_tail(3) int tail_three(struct __sk_buff *ctx) { return 3; }
__declare_tail(4) int tail_four(struct __sk_buff *ctx)
{
	tail_call_static(ctx, cilium_calls, 3);
	return 4;
}
__declare_tail(5) int tail_five(struct __sk_buff *ctx) { return 5; }
SEC("tc/entry") int entry(struct __sk_buff *ctx)
{
	tail_call_static(ctx, cilium_calls, 4);
	return 0;
}
"#,
    );
    let mut o = LoadOptions::default();
    o.map_renames
        .insert("cilium_calls".into(), "cilium_calls_00042".into());
    let v = load_object(&obj, &o);
    // Reached transitively: entry → 4 → 3; 5 is pruned.
    assert_eq!(
        v.pruned.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["tail_five"]
    );
    for p in ["entry", "tail_four", "tail_three"] {
        expect(&v, p, "loaded");
    }
    assert_eq!(
        v.program("tail_three")
            .unwrap()
            .tail_call
            .as_ref()
            .unwrap()
            .map,
        "cilium_calls_00042"
    );
    if is_root() {
        let slots: Vec<_> = v
            .tail_calls
            .iter()
            .map(|t| (t.map.as_str(), t.slot, t.program.as_str()))
            .collect();
        assert_eq!(
            slots,
            [
                ("cilium_calls_00042", 3, "tail_three"),
                ("cilium_calls_00042", 4, "tail_four")
            ]
        );
    }
}

#[test]
fn bpf_to_bpf_calls_link_static_and_global_functions_with_their_btf() {
    let dir = tempfile::tempdir().unwrap();
    let obj = build(
        dir.path(),
        "calls",
        r#"
static __attribute__((noinline)) int twice(int x) { return x * 2; }
/* A global function: the verifier checks it on its own, from its BTF prototype. */
__attribute__((noinline)) int global_len(struct __sk_buff *ctx) { return ctx ? (int)ctx->len : 0; }
SEC("tc/entry") int entry(struct __sk_buff *ctx) { return twice(global_len(ctx)); }
SEC("tc/entry") int other(struct __sk_buff *ctx) { return twice(3); }
"#,
    );
    let v = load_object(&obj, &LoadOptions::default());
    if is_root() {
        assert_eq!(v.btf, "loaded", "{v:#?}");
    } else {
        assert!(
            v.btf.starts_with("refused: Operation not permitted"),
            "{}",
            v.btf
        );
    }
    expect(&v, "entry", "loaded");
    expect(&v, "other", "loaded");
    // The linked programs carry their callees: more instructions than the entry alone.
    assert!(v.program("entry").unwrap().insns > v.program("other").unwrap().insns);
}

#[test]
fn cgroup_sections_load_with_the_attach_type_the_kernel_requires() {
    let dir = tempfile::tempdir().unwrap();
    let obj = build(
        dir.path(),
        "sock",
        r#"
SEC("cgroup/connect4") int c4(struct bpf_sock_addr *ctx) { return 1; }
SEC("cgroup/sendmsg6") int s6(struct bpf_sock_addr *ctx) { return 1; }
SEC("cgroup/getpeername4") int gp4(struct bpf_sock_addr *ctx) { return 1; }
SEC("cgroup/post_bind4") int pb4(void *ctx) { return 1; }
SEC("cgroup/sock_release") int rel(void *ctx) { return 1; }
SEC("sockops") int ops(void *ctx) { return 1; }
SEC("weird/thing") int odd(void *ctx) { return 1; }
"#,
    );
    let v = load_object(&obj, &LoadOptions::default());
    for (p, ty, at) in [
        ("c4", "cgroup_sock_addr", "cgroup_inet4_connect"),
        ("s6", "cgroup_sock_addr", "cgroup_udp6_sendmsg"),
        ("gp4", "cgroup_sock_addr", "cgroup_inet4_getpeername"),
        ("pb4", "cgroup_sock", "cgroup_inet4_post_bind"),
        ("rel", "cgroup_sock", "cgroup_inet_sock_release"),
        ("ops", "sock_ops", "cgroup_sock_ops"),
    ] {
        let pv = v.program(p).unwrap();
        assert_eq!(
            (pv.prog_type.as_str(), pv.attach_type.as_deref()),
            (ty, Some(at))
        );
        expect(&v, p, "loaded");
    }
    assert_eq!(v.unknown_sections.len(), 1);
    assert_eq!(v.unknown_sections[0].section, "weird/thing");
    assert_eq!(v.unknown_sections[0].functions, ["odd"]);
}

#[test]
fn map_in_map_gets_its_inner_map_and_by_name_pins_are_shared_in_the_private_bpffs() {
    let dir = tempfile::tempdir().unwrap();
    let obj = build(
        dir.path(),
        "mim",
        r#"
struct inner { __uint(type, 2); __type(key, __u32); __type(value, __u64); __uint(max_entries, 4); };
struct {
	__uint(type, 12);
	__uint(key_size, 4);
	__uint(max_entries, 2);
	__uint(pinning, 1);
	__array(values, struct inner);
} outer_map SEC(".maps");
struct { __uint(type, 1); __type(key, __u32); __type(value, __u32); __uint(max_entries, 16);
	 __uint(map_flags, 1); __uint(pinning, 1); } shared_hash SEC(".maps");
SEC("tc/entry") int entry(struct __sk_buff *ctx)
{
	__u32 k = 0;
	void *in = bpf_map_lookup_elem(&outer_map, &k);
	if (in && bpf_map_lookup_elem(in, &k))
		return 1;
	return bpf_map_lookup_elem(&shared_hash, &k) ? 2 : 0;
}
"#,
    );
    let loader = Loader::new();
    let first = loader.load_file(&obj, &LoadOptions::default());
    expect(&first, "entry", "loaded");
    if !is_root() {
        assert!(loader.pinning_off().is_some());
        return;
    }
    assert!(
        loader.pinning_off().is_none(),
        "root mounts a private bpffs"
    );
    let pinning =
        |v: &ObjectVerdict, m: &str| v.maps.iter().find(|x| x.name == m).unwrap().pinning.clone();
    assert_eq!(pinning(&first, "outer_map"), "created and pinned");
    assert_eq!(pinning(&first, "shared_hash"), "created and pinned");
    let second = loader.load_file(&obj, &LoadOptions::default());
    assert_eq!(pinning(&second, "shared_hash"), "reused pin");
    assert_eq!(pinning(&second, "outer_map"), "reused pin");
    // Never on the node's bpffs.
    assert!(!Path::new("/sys/fs/bpf/tc/globals/shared_hash").exists());
}

#[test]
fn a_verifier_rejection_keeps_the_kernels_last_words() {
    let dir = tempfile::tempdir().unwrap();
    let obj = build(
        dir.path(),
        "bad",
        r#"SEC("tc/entry") int entry(struct __sk_buff *ctx) { return *(volatile int *)((char *)ctx + 4096); }"#,
    );
    let v = load_object(&obj, &LoadOptions::default());
    expect(&v, "entry", "rejected");
    if let Verdict::Rejected { log_tail, error } = &v.program("entry").unwrap().verdict {
        assert!(
            log_tail.contains("invalid bpf_context access"),
            "{log_tail}"
        );
        assert!(log_tail.lines().count() <= LoadOptions::default().log_lines);
        assert!(error.contains("Permission denied"), "{error}");
    }
}
