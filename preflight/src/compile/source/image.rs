//! What preflight takes out of a Cilium image, and how, whatever holds the image (a registry,
//! a `docker save` file, an OCI archive or layout).
//!
//! Two things, nothing else: the datapath sources at `/var/lib/cilium/bpf` (pkg/defaults:
//! `LibraryPath` `/var/lib/cilium` + `BpfDir` `bpf`; the image's `make install-container-binary`
//! layer, cilium/cilium images/cilium/Dockerfile), and the compiler the agent runs,
//! `clang` and `llc` on the image's PATH: `/usr/local/bin` in current images
//! (cilium/cilium images/runtime/Dockerfile copies them from the cilium-llvm image,
//! cilium/image-tools images/llvm: statically linked, BPF target only), `/bin` in older ones.
//!
//! Layers are read one at a time and only as far as needed. The bpf dir comes from the top:
//! layers are read from the newest down to the first one that adds files under it (with
//! whiteouts of the layers above honoured); lower layers are not read for more of it. The
//! toolchain comes from the runtime base, so it is looked for from the bottom layer up (only
//! when asked: `--clang-from-image`), unless a layer already read for the bpf dir had it; the
//! search stops at the first layer that gives both from /usr/local/bin. In
//! a Cilium image that is two layers of about ten; the others (Envoy, Hubble, ...) are never
//! downloaded. Every layer's digest is checked before what it gave is kept.
use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    io::Read,
    path::{Path, PathBuf},
};

use super::{
    cache::LayerMeta,
    tarx::{self, Kind, Limits, Route},
};

pub const BPF_DIR: &str = "var/lib/cilium/bpf";
/// Where an image keeps the compiler the agent runs: the agent executes `clang` (and `llc`)
/// by name through PATH (pkg/datapath/loader/compile.go, `compiler = "clang"`), so these are
/// the PATH directories of Cilium's Ubuntu base, in PATH order. Cilium's runtime image puts
/// them in /usr/local/bin today; older runtimes copied them to /bin (merged into /usr/bin).
pub const TOOL_DIRS: &[&str] = &["usr/local/bin", "usr/bin", "bin"];
pub const TOOLS: &[&str] = &["clang", "llc"];

/// Whiteout markers (OCI image spec, layer.md "Whiteouts").
const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// How a layer's bytes are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// sha256 of the blob as stored (registry, OCI layout): the descriptor's digest.
    Blob(String),
    /// sha256 of the uncompressed tar: the config's `rootfs.diff_ids` entry (docker-archive,
    /// whose layer files are named by something else).
    DiffId(String),
}

/// Where an image's layers are read from.
pub trait Blobs {
    /// A reader over the layer's bytes as stored, and how to check them.
    fn open_layer(
        &mut self,
        index: usize,
        layer: &LayerMeta,
    ) -> Result<(Box<dyn Read + '_>, Check), String>;
}

/// Paths taken out of an image, under a staging dir: `bpf/…`, `toolchain/clang`, `toolchain/llc`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Taken {
    /// Digests of the layers the bpf dir came from (newest first).
    pub bpf_layers: Vec<String>,
    pub toolchain_layers: Vec<String>,
    /// Why a toolchain file was not taken (a link, say).
    pub toolchain_notes: Vec<String>,
}

/// Whiteouts seen in the layers above the one being read.
#[derive(Default)]
struct Overlay {
    hidden: BTreeSet<PathBuf>,
    opaque: BTreeSet<PathBuf>,
    /// Paths an upper layer provided (upper wins).
    provided: HashSet<PathBuf>,
    pending_hidden: Vec<PathBuf>,
    pending_opaque: Vec<PathBuf>,
}

impl Overlay {
    /// Whether an upper layer's whiteout hides `path` in this and lower layers.
    fn covered(&self, path: &Path) -> bool {
        path.ancestors()
            .any(|a| self.hidden.contains(a) || (a != path && self.opaque.contains(a)))
    }

    /// Records a whiteout entry; true when `path` was one.
    fn whiteout(&mut self, path: &Path) -> bool {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
        if name == OPAQUE {
            self.pending_opaque.push(parent);
            true
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            self.pending_hidden.push(parent.join(hidden));
            true
        } else {
            false
        }
    }

    /// A layer's own whiteouts apply to the layers below it only.
    fn end_layer(&mut self) {
        self.hidden.extend(self.pending_hidden.drain(..));
        self.opaque.extend(self.pending_opaque.drain(..));
    }
}

/// (`clang` or `llc`, its directory's rank in PATH order) for a toolchain path.
fn toolchain_name(path: &Path) -> Option<(&'static str, usize)> {
    let name = path.file_name()?.to_str()?;
    let tool = TOOLS.iter().find(|t| **t == name)?;
    let dir = path.parent()?;
    let rank = TOOL_DIRS.iter().position(|d| Path::new(d) == dir)?;
    Some((tool, rank))
}

/// Reads one layer through `route`, checks its digest; the error names the layer.
fn read_layer(
    blobs: &mut dyn Blobs,
    index: usize,
    layer: &LayerMeta,
    staging: &Path,
    route: &mut dyn FnMut(&Path, &Kind) -> Route,
) -> Result<(), String> {
    let (reader, check) = blobs.open_layer(index, layer)?;
    let name = format!("layer {} ({})", index, layer.digest);
    let (what, want) = match &check {
        Check::Blob(d) => ("blob digest", d),
        Check::DiffId(d) => ("diff id (sha256 of the uncompressed layer)", d),
    };
    let pick = |raw: Option<String>, plain: Option<String>| match &check {
        Check::Blob(_) => raw,
        Check::DiffId(_) => plain,
    };
    // A digest mismatch explains a corrupt layer better than the tar error it causes.
    let (got, failure) = match tarx::extract(&name, reader, staging, &Limits::LAYER, route) {
        Ok((_, d)) => (pick(Some(d.raw), Some(d.plain)), None),
        Err(f) => (pick(f.raw, f.plain), Some(f.message)),
    };
    match (got, failure) {
        (Some(got), _) if &got != want => Err(format!(
            "{name}: {what} mismatch: expected {want}, got {got}; refusing the image"
        )),
        (_, Some(message)) => Err(message),
        (Some(_), None) => Ok(()),
        (None, None) => Err(format!("{name}: not read to its end")),
    }
}

/// Takes the bpf dir (and, with `toolchain`, clang and llc) out of `layers` (bottom first)
/// into `staging`. Errors name the layer; nothing in `staging` is to be kept after one.
pub fn take(
    blobs: &mut dyn Blobs,
    layers: &[LayerMeta],
    staging: &Path,
    want_bpf: bool,
    want_toolchain: bool,
) -> Result<Taken, String> {
    let mut taken = Taken::default();
    let mut overlay = Overlay::default();
    let bpf_prefix = Path::new(BPF_DIR);
    // Per tool: the rank of the PATH directory it was taken from.
    let mut tools: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut read_from_top = layers.len();
    if want_bpf {
        std::fs::create_dir_all(staging.join("bpf")).map_err(|e| e.to_string())?;
        for (index, layer) in layers.iter().enumerate().rev() {
            read_from_top = index;
            let mut added_bpf_files = false;
            let mut layer_tools = Vec::new();
            let mut route = |path: &Path, kind: &Kind| -> Route {
                if overlay.whiteout(path) || overlay.covered(path) {
                    return Route::Skip;
                }
                if let Ok(rel) = path.strip_prefix(bpf_prefix) {
                    if !overlay.provided.insert(path.to_path_buf()) && *kind != Kind::Dir {
                        return Route::Skip;
                    }
                    if *kind == Kind::File {
                        added_bpf_files = true;
                    }
                    return Route::Take(Path::new("bpf").join(rel));
                }
                if want_toolchain && let Some((tool, rank)) = toolchain_name(path) {
                    // The newest layer wins for a path; an earlier PATH directory wins overall.
                    if !overlay.provided.insert(path.to_path_buf())
                        || tools.get(tool).is_some_and(|r| *r <= rank)
                    {
                        return Route::Skip;
                    }
                    layer_tools.push((path.to_path_buf(), kind.clone()));
                    if *kind == Kind::File {
                        tools.insert(tool, rank);
                        return Route::Take(Path::new("toolchain").join(tool));
                    }
                }
                Route::Skip
            };
            read_layer(blobs, index, layer, staging, &mut route)?;
            overlay.end_layer();
            note_tools(&mut taken, &layer_tools, &layer.digest);
            if added_bpf_files {
                taken.bpf_layers.push(layer.digest.clone());
                break;
            }
        }
    }
    let found_above: BTreeSet<&'static str> = tools.keys().copied().collect();
    if want_toolchain && found_above.len() < TOOLS.len() {
        // From the bottom up to the layers already read: a later layer overrides an earlier
        // one, at the same or an earlier PATH directory; a whiteout removes what it hides.
        for (index, layer) in layers.iter().enumerate().take(read_from_top) {
            let mut layer_tools = Vec::new();
            let mut hidden = Vec::new();
            let mut route = |path: &Path, kind: &Kind| -> Route {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if let Some(h) = name.strip_prefix(WHITEOUT) {
                    hidden.push(path.with_file_name(h));
                }
                match toolchain_name(path) {
                    Some((tool, rank))
                        if !found_above.contains(tool)
                            && tools.get(tool).is_none_or(|r| rank <= *r) =>
                    {
                        layer_tools.push((path.to_path_buf(), kind.clone()));
                        if *kind == Kind::File {
                            tools.insert(tool, rank);
                            Route::Take(Path::new("toolchain").join(tool))
                        } else {
                            Route::Skip
                        }
                    }
                    _ => Route::Skip,
                }
            };
            read_layer(blobs, index, layer, staging, &mut route)?;
            for h in hidden {
                if let Some((tool, rank)) = toolchain_name(&h)
                    && tools.get(tool) == Some(&rank)
                    && !found_above.contains(tool)
                {
                    let _ = std::fs::remove_file(staging.join("toolchain").join(tool));
                    tools.remove(tool);
                }
            }
            note_tools(&mut taken, &layer_tools, &layer.digest);
            // The best place (the first PATH directory) for both: nothing below can win.
            if TOOLS.iter().all(|t| tools.get(t) == Some(&0)) {
                break;
            }
        }
    }
    Ok(taken)
}

/// Records the layer a toolchain file came from, and why one was not taken (a link).
fn note_tools(taken: &mut Taken, found: &[(PathBuf, Kind)], layer: &str) {
    if found.is_empty() {
        return;
    }
    if !taken.toolchain_layers.iter().any(|l| l == layer) {
        taken.toolchain_layers.push(layer.to_string());
    }
    for (path, kind) in found {
        match kind {
            Kind::File => {}
            Kind::Symlink(to) => taken.toolchain_notes.push(format!(
                "/{} is a symlink to {} in the image: not followed",
                path.display(),
                to.display()
            )),
            other => taken.toolchain_notes.push(format!(
                "/{} is not a regular file in the image ({other:?})",
                path.display()
            )),
        }
    }
}

/// The platform this machine pulls: `linux/<GOARCH>` (the names image indexes use).
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    format!("linux/{arch}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// Layers held in memory, checked by their blob digest; counts what was opened.
    struct Mem {
        blobs: Vec<Vec<u8>>,
        opened: Vec<usize>,
    }

    impl Blobs for Mem {
        fn open_layer(
            &mut self,
            index: usize,
            layer: &LayerMeta,
        ) -> Result<(Box<dyn Read + '_>, Check), String> {
            self.opened.push(index);
            Ok((
                Box::new(&self.blobs[index][..]),
                Check::Blob(layer.digest.clone()),
            ))
        }
    }

    fn layer(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            b.append_data(&mut h, path, data.as_bytes()).unwrap();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&b.into_inner().unwrap()).unwrap();
        gz.finish().unwrap()
    }

    fn metas(blobs: &[Vec<u8>]) -> Vec<LayerMeta> {
        blobs
            .iter()
            .map(|b| LayerMeta {
                digest: tarx::sha256_of(&b[..], u64::MAX, "x").unwrap(),
                size: b.len() as i64,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            })
            .collect()
    }

    /// base (toolchain) / unrelated / bpf v1 / unrelated / whiteout + bpf change.
    fn image() -> Vec<Vec<u8>> {
        vec![
            layer(&[
                ("usr/local/bin/clang", "clang-bin"),
                ("usr/local/bin/llc", "llc-bin"),
                ("etc/os-release", "x"),
            ]),
            layer(&[("usr/bin/envoy", "big")]),
            layer(&[
                ("var/lib/cilium/bpf/bpf_lxc.c", "v1"),
                ("var/lib/cilium/bpf/old.h", "old"),
                ("var/lib/cilium/bpf/lib/a.h", "a"),
            ]),
            layer(&[("usr/bin/hubble", "big")]),
            layer(&[
                ("var/lib/cilium/bpf/.wh.old.h", ""),
                ("var/lib/cilium/bpf/bpf_lxc.c", "v2"),
            ]),
        ]
    }

    #[test]
    fn the_bpf_dir_comes_from_the_top_with_whiteouts_and_nothing_else_is_read() {
        let blobs = image();
        let layers = metas(&blobs);
        let mut mem = Mem {
            blobs,
            opened: vec![],
        };
        let dir = tempfile::tempdir().unwrap();
        let taken = take(&mut mem, &layers, dir.path(), true, false).unwrap();
        // Layer 4 adds a file under the bpf dir: reading stops there.
        assert_eq!(mem.opened, [4]);
        assert_eq!(taken.bpf_layers, [layers[4].digest.clone()]);
        let bpf = dir.path().join("bpf");
        assert_eq!(
            std::fs::read_to_string(bpf.join("bpf_lxc.c")).unwrap(),
            "v2"
        );
        assert!(!dir.path().join("usr").exists() && !dir.path().join("toolchain").exists());
    }

    #[test]
    fn the_toolchain_comes_from_the_bottom_and_the_layers_between_are_not_read() {
        let mut blobs = image();
        // A top layer without bpf files: the bpf dir comes from layer 2, whose old.h is kept.
        blobs.truncate(4);
        let layers = metas(&blobs);
        let mut mem = Mem {
            blobs,
            opened: vec![],
        };
        let dir = tempfile::tempdir().unwrap();
        let taken = take(&mut mem, &layers, dir.path(), true, true).unwrap();
        assert_eq!(mem.opened, [3, 2, 0]);
        assert_eq!(taken.toolchain_layers, [layers[0].digest.clone()]);
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
        assert_eq!(read("toolchain/clang"), "clang-bin");
        assert_eq!(read("toolchain/llc"), "llc-bin");
        assert_eq!(read("bpf/old.h"), "old");
        assert_eq!(read("bpf/bpf_lxc.c"), "v1");
        assert!(!dir.path().join("bpf/usr").exists());
    }

    #[test]
    fn the_toolchain_is_found_in_path_order_as_older_images_keep_it() {
        // An older runtime: clang and llc in /usr/bin (COPY to the merged /bin); a later layer
        // adds a /usr/local/bin/clang, which wins as PATH finds it first.
        let blobs = vec![
            layer(&[("usr/bin/clang", "old-clang"), ("usr/bin/llc", "old-llc")]),
            layer(&[("usr/local/bin/clang", "new-clang")]),
            layer(&[("var/lib/cilium/bpf/bpf_lxc.c", "x")]),
        ];
        let layers = metas(&blobs);
        let mut mem = Mem {
            blobs,
            opened: vec![],
        };
        let dir = tempfile::tempdir().unwrap();
        let taken = take(&mut mem, &layers, dir.path(), true, true).unwrap();
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
        assert_eq!(read("toolchain/clang"), "new-clang");
        assert_eq!(read("toolchain/llc"), "old-llc");
        assert_eq!(mem.opened, [2, 0, 1]);
        assert_eq!(
            taken.toolchain_layers,
            [layers[0].digest.clone(), layers[1].digest.clone()]
        );
        assert_eq!(toolchain_name(Path::new("bin/llc")), Some(("llc", 2)));
        assert_eq!(toolchain_name(Path::new("opt/bin/clang")), None);
    }

    #[test]
    fn a_layer_whose_bytes_do_not_match_its_digest_is_refused() {
        let blobs = image();
        let mut layers = metas(&blobs);
        layers[4].digest = layers[3].digest.clone();
        let mut mem = Mem {
            blobs,
            opened: vec![],
        };
        let dir = tempfile::tempdir().unwrap();
        let err = take(&mut mem, &layers, dir.path(), true, false).unwrap_err();
        assert!(
            err.contains("layer 4") && err.contains("blob digest mismatch"),
            "{err}"
        );
    }

    #[test]
    fn whiteouts_hide_lower_layers_not_their_own() {
        let mut o = Overlay::default();
        assert!(o.whiteout(Path::new("a/.wh.b")));
        assert!(o.whiteout(Path::new("c/.wh..wh..opq")));
        assert!(!o.covered(Path::new("a/b")));
        o.end_layer();
        assert!(o.covered(Path::new("a/b")) && o.covered(Path::new("a/b/x")));
        assert!(o.covered(Path::new("c/x")) && !o.covered(Path::new("c")));
        assert!(!o.covered(Path::new("a/bb")));
    }
}
