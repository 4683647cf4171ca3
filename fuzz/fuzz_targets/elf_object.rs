#![no_main]
//! A datapath object from a user's tree or image (`--bpf-dir`, `--bpf-tar`, `--image`): the ELF
//! and BTF parsing behind the loader and `inspect`. Any bytes give an object or an error; no
//! bpf() call is made here.
use libfuzzer_sys::fuzz_target;
use preflight::compile::elf::{inspect, parse::Object};

fuzz_target!(|data: &[u8]| {
    if let Ok(object) = Object::parse(data) {
        // What the loader asks of a parsed object: its functions and maps by name.
        let _ = object.function("entry");
        let _ = object.map_index("cilium_calls");
    }
    let _ = inspect::inspect(data);
});
