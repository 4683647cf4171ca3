//! Bounded fuzz loop over the clang diagnostics parser: mutations of real clang output (byte
//! flips, splices, truncations, inserted separators) must never panic, and every parsed
//! diagnostic must keep the parser's invariants. Prints executions; deterministic seed.
use preflight::compile::diag::{Severity, parse};

const SEEDS: &[&str] = &[
    "In file included from bpf_lxc.c:4:\n./node_config.h:22:9: error: 'CALLS_MAP' macro redefined [-Werror,-Wmacro-redefined]\n/s/templates/ab/ep_config.h:5:9: note: previous definition is here\n1 error generated.\n",
    "In file included from bpf_host.c:18:\n./lib/conntrack.h:46:29: error: implicit conversion loses integer precision: 'unsigned long long' to '__u32' (aka 'unsigned int') [-Werror,-Wshorten-64-to-32]\n",
    "error: unknown target CPU 'v9'\nnote: valid target CPU values are: generic, v1, v2, v3, v4, probe\n",
    "./lib/events.h:48:13: error: use of undeclared identifier 'HOST_EP_ID'\nbpf_host.c:7:22: note: expanded from macro 'EVENT_SOURCE'\n",
    "clang: error: no such file or directory: 'x.c'\n<command line>:1:9: note: previous definition is here\n",
];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b":",
    b": error: ",
    b": note: ",
    b": warning: ",
    b"'",
    b" [",
    b"]",
    b"\n",
    b"In file included from ",
    b"from ",
    b"-W",
    b",",
    b"\xff",
    b"\xc3\xa9",
    b"9999999999999",
    b"fatal error: ",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let at = rng.below(input.len() + 1);
                input.splice(at..at, t.iter().copied());
            }
            2 if !input.is_empty() => {
                let at = rng.below(input.len());
                input.truncate(at);
            }
            3 => {
                let other = SEEDS[rng.below(SEEDS.len())].as_bytes();
                let from = rng.below(other.len());
                let at = rng.below(input.len() + 1);
                input.splice(at..at, other[from..].iter().copied());
            }
            _ if !input.is_empty() => {
                let a = rng.below(input.len());
                let b = rng.below(input.len());
                let (lo, hi) = (a.min(b), a.max(b));
                input.drain(lo..hi);
            }
            _ => {}
        }
    }
}

#[test]
fn diagnostics_parser_survives_mutated_clang_output() {
    let iterations: usize = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0usize;
    for i in 0..iterations {
        let mut input = SEEDS[i % SEEDS.len()].as_bytes().to_vec();
        mutate(&mut rng, &mut input);
        let text = String::from_utf8_lossy(&input);
        for d in parse(&text) {
            parsed += 1;
            // Notes attach to a parent unless nothing came before them.
            assert!(d.notes.iter().all(|n| n.severity == Severity::Note));
            assert!(d.notes.iter().all(|n| n.notes.is_empty()));
            let _ = d.subject();
            if let Some(flag) = &d.flag {
                assert!(flag.starts_with("-W") && flag != "-Werror");
            }
        }
    }
    println!("fuzz: {iterations} executions, {parsed} diagnostics parsed, 0 crashes");
}
