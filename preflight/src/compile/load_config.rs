//! The load-time configuration of one object (Cilium 1.18+), handed to whoever loads it.
//!
//! From 1.18 the agent moves settings out of the generated headers into variables in the
//! object's `.rodata.config` section (`DECLARE_CONFIG` / `NODE_CONFIG` in
//! `bpf/include/bpf/config/*.h` and `lib/*.h`, read with `CONFIG(name)`), and sets them when it
//! loads the object (pkg/datapath/config: `config.New<Object>(node)` filled by the loader, then
//! `Constants` in `bpf.LoadAndAssign`), together with map renames (`cilium_calls` →
//! `cilium_calls_<id>`). A verifier result without these values is not the agent's: dead-code
//! elimination by the loader depends on them.
//!
//! **The contract with the ELF loader** (compile/ loader module, issue 14 §3) is plain data:
//! [`LoadConfig::variables`] maps the *ELF symbol name* in `.rodata.config` (`__config_<name>`)
//! to the bytes to store there, exactly the symbol's size, little-endian; variables not in the
//! map keep the object's own bytes (the defaults `config.New<Object>` starts from).
//! [`LoadConfig::map_renames`] maps a map's name in the object to the name the agent gives it.
use std::collections::BTreeMap;

use object::{Object, ObjectSection, ObjectSymbol};
use serde::Serialize;

use super::agent_facts::ConfigValue;

/// The section the load-time variables live in (`__CONFIG_SECTION` in lib/static_data.h).
pub const CONFIG_SECTION: &str = ".rodata.config";
/// The prefix `DECLARE_CONFIG` gives each variable's symbol (`pkg/datapath/config` `ConstantPrefix`).
pub const SYMBOL_PREFIX: &str = "__config_";

/// ELF symbol name → bytes to write (see the module docs for the contract).
pub type ConfigOverrides = BTreeMap<String, Vec<u8>>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoadConfig {
    /// `__config_<name>` → the value's bytes, little-endian, exactly the symbol's size.
    pub variables: ConfigOverrides,
    /// Map name in the object → the name the agent pins it under.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub map_renames: BTreeMap<String, String>,
    /// Variables the object declares that the agent leaves at their defaults.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub defaults_kept: Vec<String>,
}

impl LoadConfig {
    pub fn is_empty(&self) -> bool {
        self.variables.is_empty() && self.map_renames.is_empty()
    }
}

/// The `.rodata.config` variables an object declares: (symbol name, size in bytes).
pub fn declared(bytes: &[u8]) -> Result<Vec<(String, u64)>, String> {
    let file = object::File::parse(bytes).map_err(|e| format!("not an ELF object: {e}"))?;
    let Some(section) = file.section_by_name(CONFIG_SECTION) else {
        return Ok(Vec::new());
    };
    let index = section.index();
    let mut out: Vec<(String, u64)> = file
        .symbols()
        .filter(|s| s.section_index() == Some(index))
        .filter_map(|s| {
            let name = s.name().ok()?;
            name.starts_with(SYMBOL_PREFIX)
                .then(|| (name.to_string(), s.size()))
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// A value as the bytes of a variable of `size` bytes: integers little-endian (truncated or
/// zero-extended), booleans one byte, byte strings (addresses, MACs) padded with zeros.
pub fn encode(value: &ConfigValue, size: u64) -> Vec<u8> {
    let size = size as usize;
    let mut out = vec![0u8; size];
    match value {
        ConfigValue::Bool(b) => {
            if let Some(first) = out.first_mut() {
                *first = u8::from(*b);
            }
        }
        ConfigValue::Uint(n) => {
            for (i, byte) in n.to_le_bytes().iter().enumerate().take(size) {
                out[i] = *byte;
            }
        }
        ConfigValue::Bytes(b) => {
            let n = b.len().min(size);
            out[..n].copy_from_slice(&b[..n]);
        }
    }
    out
}

/// The configuration for an object: the agent's values for the variables it declares, its map
/// renames for the maps it has.
pub fn for_object(
    bytes: &[u8],
    values: &[(&str, ConfigValue)],
    renames: &[(&str, String)],
    maps: &[String],
) -> Result<LoadConfig, String> {
    let mut config = LoadConfig::default();
    for (symbol, size) in declared(bytes)? {
        let name = &symbol[SYMBOL_PREFIX.len()..];
        match values.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => {
                config.variables.insert(symbol.clone(), encode(value, size));
            }
            None => config.defaults_kept.push(name.to_string()),
        }
    }
    for (from, to) in renames {
        if maps.iter().any(|m| m == from) {
            config.map_renames.insert(from.to_string(), to.clone());
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_encoded_to_the_variable_size() {
        assert_eq!(encode(&ConfigValue::Uint(0x1234), 2), [0x34, 0x12]);
        assert_eq!(encode(&ConfigValue::Uint(0x1_0000_0001), 4), [1, 0, 0, 0]);
        assert_eq!(encode(&ConfigValue::Bool(true), 1), [1]);
        assert_eq!(
            encode(&ConfigValue::Bytes(vec![1, 2, 3, 4, 5, 6]), 8),
            [1, 2, 3, 4, 5, 6, 0, 0]
        );
        assert_eq!(encode(&ConfigValue::Bytes(vec![1, 2, 3]), 2), [1, 2]);
        assert!(declared(b"not elf").is_err());
    }
}
