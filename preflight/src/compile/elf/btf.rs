//! The object's BTF (`.BTF`) and its program annotations (`.BTF.ext`): read what the loader
//! needs (map definitions in `.maps`, data section layouts, tail-call decl tags, function
//! and line info), fix up what the compiler leaves to the loader (data section sizes and
//! variable offsets), and rewrite kinds an older kernel does not know into ones it does,
//! as libbpf and cilium/ebpf do. Format: Documentation/bpf/btf.rst (a stable kernel ABI).
//!
//! aya-obj parses BTF too, but keeps its types and the fixup crate-private behind its own
//! object model, which refuses Cilium's section names; so this is a small reader of our own.
use std::collections::HashMap;

pub const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;

/// BTF kinds (`BTF_KIND_*`).
pub mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

/// One type record: the common header and the kind's trailing data, kept raw so the type can
/// be written back byte for byte (or rewritten by the sanitiser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    pub name_off: u32,
    pub info: u32,
    /// `size` or `type`, depending on the kind.
    pub size_or_type: u32,
    pub extra: Vec<u32>,
}

impl Type {
    pub fn kind(&self) -> u32 {
        (self.info >> 24) & 0x1f
    }
    pub fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }
    fn set(&mut self, kind: u32, vlen: usize) {
        self.info = (self.info & 0x8000_0000) | (kind << 24) | (vlen as u32 & 0xffff);
    }
}

/// Words of trailing data for a kind and vlen; None for a kind this reader does not know.
fn extra_words(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        kind::INT | kind::VAR | kind::DECL_TAG => 1,
        kind::PTR
        | kind::FWD
        | kind::TYPEDEF
        | kind::VOLATILE
        | kind::CONST
        | kind::RESTRICT
        | kind::FUNC
        | kind::FLOAT
        | kind::TYPE_TAG => 0,
        kind::ARRAY => 3,
        kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => 3 * vlen,
        kind::ENUM | kind::FUNC_PROTO => 2 * vlen,
        _ => return None,
    })
}

#[derive(Debug, Clone)]
pub struct Btf {
    /// Types by id; id 0 is `void`, so `types[0]` is type 1.
    pub types: Vec<Type>,
    pub strings: Vec<u8>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, String> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| format!("truncated at byte {at}"))
}

impl Btf {
    /// Parses little-endian BTF (BPF objects built by clang for `bpf`/`bpfel`).
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let magic = data
            .get(0..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or("empty .BTF")?;
        if magic != MAGIC {
            return Err(format!(
                ".BTF: bad magic {magic:#x} (big-endian BTF is not read)"
            ));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off).ok_or(".BTF: offset overflow")?;
            let end = start.checked_add(len).ok_or(".BTF: length overflow")?;
            data.get(start..end)
                .ok_or_else(|| format!(".BTF: section {start}..{end} outside {} bytes", data.len()))
        };
        let raw = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?.to_vec();
        let mut types = Vec::new();
        let mut at = 0;
        while at < raw.len() {
            let name_off = u32_at(raw, at)?;
            let info = u32_at(raw, at + 4)?;
            let size_or_type = u32_at(raw, at + 8)?;
            let mut t = Type {
                name_off,
                info,
                size_or_type,
                extra: Vec::new(),
            };
            let words = extra_words(t.kind(), t.vlen()).ok_or_else(|| {
                format!(
                    ".BTF: type {} has unknown kind {}",
                    types.len() + 1,
                    t.kind()
                )
            })?;
            at += 12;
            for _ in 0..words {
                t.extra.push(u32_at(raw, at)?);
                at += 4;
            }
            types.push(t);
        }
        Ok(Self { types, strings })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut types = Vec::new();
        for t in &self.types {
            for w in [t.name_off, t.info, t.size_or_type]
                .iter()
                .chain(t.extra.iter())
            {
                types.extend_from_slice(&w.to_le_bytes());
            }
        }
        let mut out = Vec::with_capacity(HEADER_LEN + types.len() + self.strings.len());
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.push(1); // version
        out.push(0); // flags
        for w in [
            HEADER_LEN as u32,
            0,
            types.len() as u32,
            types.len() as u32,
            self.strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(&self.strings);
        out
    }

    pub fn get(&self, id: u32) -> Option<&Type> {
        id.checked_sub(1).and_then(|i| self.types.get(i as usize))
    }

    pub fn str_at(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    pub fn name(&self, id: u32) -> &str {
        self.get(id).map(|t| self.str_at(t.name_off)).unwrap_or("")
    }

    /// Follows typedefs and qualifiers to the type they stand for.
    pub fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..64 {
            match self.get(id) {
                Some(t)
                    if matches!(
                        t.kind(),
                        kind::TYPEDEF
                            | kind::VOLATILE
                            | kind::CONST
                            | kind::RESTRICT
                            | kind::TYPE_TAG
                            | kind::VAR
                    ) =>
                {
                    id = t.size_or_type
                }
                _ => return id,
            }
        }
        id
    }

    /// Size in bytes of a type, as `sizeof` would give it.
    pub fn size_of(&self, id: u32) -> Option<u64> {
        let id = self.resolve(id);
        let t = self.get(id)?;
        match t.kind() {
            kind::INT
            | kind::STRUCT
            | kind::UNION
            | kind::ENUM
            | kind::ENUM64
            | kind::FLOAT
            | kind::DATASEC => Some(t.size_or_type as u64),
            kind::PTR => Some(8),
            kind::ARRAY => {
                let elem = self.size_of(*t.extra.first()?)?;
                elem.checked_mul(*t.extra.get(2)? as u64)
            }
            _ => None,
        }
    }

    /// Struct or union members: (name, type id, bit offset).
    pub fn members(&self, id: u32) -> Vec<(&str, u32, u32)> {
        let Some(t) = self.get(self.resolve(id)) else {
            return Vec::new();
        };
        if !matches!(t.kind(), kind::STRUCT | kind::UNION) {
            return Vec::new();
        }
        t.extra
            .chunks_exact(3)
            .map(|m| (self.str_at(m[0]), m[1], m[2]))
            .collect()
    }

    /// Id of the first type of this kind with this name.
    pub fn find(&self, kind_: u32, name: &str) -> Option<u32> {
        self.types
            .iter()
            .position(|t| t.kind() == kind_ && self.str_at(t.name_off) == name)
            .map(|i| i as u32 + 1)
    }

    /// Variables of a data section: (variable name, type id, offset, size) as the DATASEC
    /// records them (after [`Btf::fix_datasecs`], offsets are the symbols' values).
    pub fn datasec_vars(&self, section: &str) -> Vec<(String, u32, u32, u32)> {
        let Some(ds) = self
            .find(kind::DATASEC, section)
            .and_then(|id| self.get(id))
        else {
            return Vec::new();
        };
        ds.extra
            .chunks_exact(3)
            .map(|v| {
                let var = self.get(v[0]);
                let ty = var.map(|t| t.size_or_type).unwrap_or(0);
                (self.name(v[0]).to_string(), ty, v[1], v[2])
            })
            .collect()
    }

    /// The decl tags on a function or variable (`component_idx` -1), by the tagged name.
    pub fn decl_tags(&self) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for t in &self.types {
            if t.kind() == kind::DECL_TAG && t.extra.first() == Some(&u32::MAX) {
                out.entry(self.name(t.size_or_type).to_string())
                    .or_default()
                    .push(self.str_at(t.name_off).to_string());
            }
        }
        out
    }

    /// clang leaves every DATASEC's size and its variables' offsets at 0: the linker (for a
    /// BPF object, the loader) knows them. Sets them from the ELF section sizes and the
    /// symbols' values, as libbpf's `btf_fixup_datasec` does. Returns the sections it could
    /// not place (e.g. an extern section with no ELF section).
    pub fn fix_datasecs(
        &mut self,
        section_size: impl Fn(&str) -> Option<u64>,
        symbol_value: impl Fn(&str, &str) -> Option<u64>,
    ) -> Vec<String> {
        let mut unplaced = Vec::new();
        for i in 0..self.types.len() {
            if self.types[i].kind() != kind::DATASEC {
                continue;
            }
            let name = self.str_at(self.types[i].name_off).to_string();
            let Some(size) = section_size(&name) else {
                unplaced.push(name);
                continue;
            };
            let mut extra = self.types[i].extra.clone();
            for v in extra.chunks_exact_mut(3) {
                let var_name = self.name(v[0]).to_string();
                if let Some(off) = symbol_value(&name, &var_name) {
                    v[1] = off as u32;
                }
            }
            // Entries in offset order: the kernel checks that they do not overlap.
            let mut entries: Vec<[u32; 3]> =
                extra.chunks_exact(3).map(|v| [v[0], v[1], v[2]]).collect();
            entries.sort_by_key(|v| v[1]);
            let t = &mut self.types[i];
            t.size_or_type = size as u32;
            t.extra = entries.concat();
        }
        unplaced
    }

    /// Rewrites kinds the kernel lacks into ones it has, keeping every type id (so map and
    /// function references stay valid); returns what was rewritten.
    pub fn sanitize(&mut self, kernel: &Features) -> Vec<String> {
        let mut done = std::collections::BTreeMap::<&str, usize>::new();
        for t in &mut self.types {
            match t.kind() {
                // A tag is an annotation: a one-byte int in its place changes nothing loaded.
                kind::DECL_TAG if !kernel.decl_tag => {
                    t.name_off = 0;
                    t.set(kind::INT, 0);
                    t.size_or_type = 1;
                    t.extra = vec![8];
                    *done.entry("decl_tag → int").or_default() += 1;
                }
                kind::TYPE_TAG if !kernel.type_tag => {
                    t.name_off = 0;
                    t.set(kind::CONST, 0);
                    *done.entry("type_tag → const").or_default() += 1;
                }
                kind::ENUM64 if !kernel.enum64 => {
                    t.set(kind::UNION, 0);
                    t.extra.clear();
                    *done.entry("enum64 → union").or_default() += 1;
                }
                kind::FLOAT if !kernel.float => {
                    t.set(kind::STRUCT, 0);
                    *done.entry("float → struct").or_default() += 1;
                }
                kind::FUNC if !kernel.global_func && t.vlen() != 0 => {
                    t.set(kind::FUNC, 0);
                    *done.entry("global func → static").or_default() += 1;
                }
                _ => {}
            }
        }
        done.into_iter()
            .map(|(what, n)| format!("{what} ({n})"))
            .collect()
    }
}

/// The BTF kinds a kernel accepts beyond the 5.2 base (DATASEC/VAR), probed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// BTF_KIND_DECL_TAG, 5.16.
    pub decl_tag: bool,
    /// BTF_KIND_TYPE_TAG, 5.17.
    pub type_tag: bool,
    /// BTF_KIND_ENUM64, 6.0.
    pub enum64: bool,
    /// BTF_KIND_FLOAT, 5.13.
    pub float: bool,
    /// Global function linkage, 5.6.
    pub global_func: bool,
}

impl Features {
    pub const ALL: Self = Self {
        decl_tag: true,
        type_tag: true,
        enum64: true,
        float: true,
        global_func: true,
    };
}

/// Small BTF blobs, one per kind probed (libbpf's `probe_kern_btf_*` shapes).
pub fn probe_blob(what: &str) -> Vec<u8> {
    let int = |name_off| Type {
        name_off,
        info: kind::INT << 24,
        size_or_type: 4,
        extra: vec![32],
    };
    let t = |kind_: u32, vlen: u32, name_off, size_or_type, extra: Vec<u32>| Type {
        name_off,
        info: (kind_ << 24) | vlen,
        size_or_type,
        extra,
    };
    // Strings: 1 "int", 5 "x", 7 "tag", 11 "e", 13 "a", 15 "f".
    let strings = b"\0int\0x\0tag\0e\0a\0f\0".to_vec();
    let types = match what {
        "decl_tag" => vec![
            int(1),
            t(kind::VAR, 0, 5, 1, vec![1]),
            t(kind::DECL_TAG, 0, 7, 2, vec![u32::MAX]),
        ],
        "type_tag" => vec![
            int(1),
            t(kind::TYPE_TAG, 0, 7, 1, vec![]),
            t(kind::PTR, 0, 0, 2, vec![]),
        ],
        "enum64" => vec![t(kind::ENUM64, 1, 11, 8, vec![13, 1, 0])],
        "float" => vec![t(kind::FLOAT, 0, 15, 4, vec![])],
        _ => vec![
            int(1),
            t(kind::FUNC_PROTO, 0, 0, 1, vec![]),
            t(kind::FUNC, 1, 15, 2, vec![]),
        ],
    };
    Btf { types, strings }.to_bytes()
}

/// `.BTF.ext` function and line info, by section name. Offsets are in bytes from the start of
/// the section, as clang writes them.
#[derive(Debug, Clone, Default)]
pub struct Ext {
    /// (instruction byte offset, FUNC type id).
    pub func_info: HashMap<String, Vec<(u32, u32)>>,
    /// (instruction byte offset, file name, line, line/column), as `struct bpf_line_info`.
    pub line_info: HashMap<String, Vec<[u32; 4]>>,
    /// CO-RE relocation records by section (counted: this loader does not apply them).
    pub core_relos: HashMap<String, usize>,
}

impl Ext {
    pub fn parse(data: &[u8], btf: &Btf) -> Result<Self, String> {
        let magic = data
            .get(0..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or("empty .BTF.ext")?;
        if magic != MAGIC {
            return Err(format!(".BTF.ext: bad magic {magic:#x}"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let sub = |off_at: usize| -> Result<&[u8], String> {
            if off_at + 8 > hdr_len {
                return Ok(&[]);
            }
            let off = u32_at(data, off_at)? as usize;
            let len = u32_at(data, off_at + 4)? as usize;
            let start = hdr_len.saturating_add(off);
            data.get(start..start.saturating_add(len)).ok_or_else(|| {
                format!(
                    ".BTF.ext: subsection at {start} outside {} bytes",
                    data.len()
                )
            })
        };
        let mut ext = Ext::default();
        // (records, words per record we keep)
        for (which, off_at) in [(0, 8), (1, 16), (2, 24)] {
            let raw = sub(off_at)?;
            if raw.len() < 4 {
                continue;
            }
            let rec_size = u32_at(raw, 0)? as usize;
            let min = [8, 16, 16][which];
            if rec_size < min {
                return Err(format!(".BTF.ext: record size {rec_size} < {min}"));
            }
            let mut at = 4;
            while at + 8 <= raw.len() {
                let sec = btf.str_at(u32_at(raw, at)?).to_string();
                let n = u32_at(raw, at + 4)? as usize;
                at += 8;
                let end = n
                    .checked_mul(rec_size)
                    .and_then(|b| b.checked_add(at))
                    .filter(|&e| e <= raw.len())
                    .ok_or(".BTF.ext: records past the end")?;
                match which {
                    0 => {
                        let v = ext.func_info.entry(sec).or_default();
                        for r in (at..end).step_by(rec_size) {
                            v.push((u32_at(raw, r)?, u32_at(raw, r + 4)?));
                        }
                    }
                    1 => {
                        let v = ext.line_info.entry(sec).or_default();
                        for r in (at..end).step_by(rec_size) {
                            v.push([
                                u32_at(raw, r)?,
                                u32_at(raw, r + 4)?,
                                u32_at(raw, r + 8)?,
                                u32_at(raw, r + 12)?,
                            ]);
                        }
                    }
                    _ => *ext.core_relos.entry(sec).or_default() += n,
                }
                at = end;
            }
        }
        Ok(ext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_blobs_round_trip_through_the_reader() {
        for what in ["decl_tag", "type_tag", "enum64", "float", "func"] {
            let blob = probe_blob(what);
            let btf = Btf::parse(&blob).unwrap();
            assert_eq!(btf.to_bytes(), blob, "{what}");
        }
        let btf = Btf::parse(&probe_blob("decl_tag")).unwrap();
        assert_eq!(btf.decl_tags()["x"], ["tag"]);
        assert_eq!(btf.size_of(2), Some(4), "a VAR has its type's size");
    }

    #[test]
    fn sanitizing_keeps_ids_and_replaces_unknown_kinds() {
        let mut btf = Btf::parse(&probe_blob("decl_tag")).unwrap();
        let done = btf.sanitize(&Features {
            decl_tag: false,
            ..Features::ALL
        });
        assert_eq!(done, ["decl_tag → int (1)"]);
        assert_eq!(btf.types.len(), 3);
        assert_eq!(btf.types[2].kind(), kind::INT);
        let mut btf = Btf::parse(&probe_blob("func")).unwrap();
        btf.sanitize(&Features {
            global_func: false,
            ..Features::ALL
        });
        assert_eq!(btf.types[2].vlen(), 0, "linkage static");
        let mut btf = Btf::parse(&probe_blob("enum64")).unwrap();
        btf.sanitize(&Features {
            enum64: false,
            ..Features::ALL
        });
        assert_eq!(
            (btf.types[0].kind(), btf.types[0].extra.len()),
            (kind::UNION, 0)
        );
        assert_eq!(btf.size_of(1), Some(8), "same size");
    }

    #[test]
    fn datasec_fixup_takes_sizes_and_offsets_from_the_elf() {
        // [1] int, [2] VAR a, [3] VAR b, [4] DATASEC ".d" with both at offset 0.
        let strings = b"\0int\0a\0b\0.d\0".to_vec();
        let t = |k: u32, vlen: u32, name_off, st, extra: Vec<u32>| Type {
            name_off,
            info: (k << 24) | vlen,
            size_or_type: st,
            extra,
        };
        let mut btf = Btf {
            types: vec![
                t(kind::INT, 0, 1, 4, vec![32]),
                t(kind::VAR, 0, 5, 1, vec![1]),
                t(kind::VAR, 0, 7, 1, vec![1]),
                t(kind::DATASEC, 2, 9, 0, vec![3, 0, 4, 2, 0, 4]),
            ],
            strings,
        };
        let unplaced = btf.fix_datasecs(
            |s| (s == ".d").then_some(8),
            |_, v| Some(if v == "a" { 0 } else { 4 }),
        );
        assert!(unplaced.is_empty());
        assert_eq!(
            btf.datasec_vars(".d"),
            [("a".to_string(), 1, 0, 4), ("b".to_string(), 1, 4, 4)]
        );
        assert_eq!(btf.get(4).unwrap().size_or_type, 8);
    }

    #[test]
    fn truncated_or_foreign_data_is_an_error_not_a_panic() {
        assert!(Btf::parse(b"").is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0]).is_err());
        let mut blob = probe_blob("float");
        blob.truncate(blob.len() - 6);
        assert!(Btf::parse(&blob).is_err());
        assert!(
            Ext::parse(
                b"\x9f\xeb\x01\x00",
                &Btf::parse(&probe_blob("float")).unwrap()
            )
            .is_err()
        );
    }
}
