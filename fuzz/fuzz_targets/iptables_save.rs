#![no_main]
//! `iptables-save` output (flannel's chains are removed from what it lists): any text either
//! parses, or names a line inside the input; a parse keeps every table's text so a restore is
//! byte-faithful, and the removal commands only ever name flannel's chains.
use libfuzzer_sys::fuzz_target;
use preflight::plan::iptables;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match iptables::parse(text) {
        Ok(tables) => {
            for t in &tables {
                assert!(t.text.trim_end().ends_with("COMMIT"), "{t:?}");
            }
            for argv in iptables::removal(&tables) {
                let chain = &argv[3];
                let flannel_jump = argv.iter().any(|a| a.starts_with(iptables::FLANNEL_PREFIX));
                assert!(flannel_jump || chain.starts_with(iptables::FLANNEL_PREFIX), "{argv:?}");
            }
        }
        Err((line, _)) => assert!(line >= 1 && line <= text.lines().count().max(1)),
    }
});
