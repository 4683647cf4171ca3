//! Where the datapath sources come from: a bpf dir (`--bpf-dir`), a tar of one (`--bpf-tar`),
//! a Cilium image pulled from its registry (`--image`) or saved to a file (`--image-archive`),
//! or — the labelled fallback — the built-in templates. The result says which, so the report
//! can say what was judged. With `--clang-from-image` the image's own clang and llc compile it,
//! when they run on this machine.
pub mod archive;
pub mod cache;
pub mod image;
pub mod registry;
pub mod tarx;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::Serialize;

use crate::cilium::CiliumVersion;

use self::{
    cache::{Cache, Entry, ImageMeta},
    registry::{PullError, Registry},
};

/// What the command line asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub bpf_dir: Option<PathBuf>,
    pub bpf_tar: Option<PathBuf>,
    pub image: Option<String>,
    pub image_archive: Option<PathBuf>,
    pub clang_from_image: bool,
    /// `--clang`: always wins.
    pub clang: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    /// Download progress on stderr.
    pub progress: bool,
}

/// Where the judged tree came from (in the compile report as `tree`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TreeOrigin {
    /// The built-in templates: a model of Cilium's datapath, used when no real tree is given.
    #[default]
    Templates,
    Dir {
        path: String,
    },
    /// A tar file; `inner` is where the tree sits in it (`bpf`, `var/lib/cilium/bpf`, or
    /// empty: at the top).
    Tar {
        file: String,
        inner: String,
    },
    /// A Cilium image: its reference, the digest of what was taken (the platform's manifest,
    /// or for a docker-archive the config, Docker's image ID), and where it came from.
    Image {
        reference: String,
        digest: String,
        platform: String,
        /// `registry`, `cache` or `archive`.
        from: String,
        /// Why the cache answered instead of the registry (offline), if it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        /// The extracted bpf dir.
        path: String,
    },
}

impl TreeOrigin {
    pub fn is_real(&self) -> bool {
        !matches!(self, TreeOrigin::Templates)
    }

    /// When an image's tag names another Cilium minor than the target's: the tree is that
    /// version's, while flags and headers follow the target (`--cilium-version`).
    pub fn version_mismatch(&self, target_version: &str) -> Option<String> {
        let TreeOrigin::Image { reference, .. } = self else {
            return None;
        };
        let tag = reference.rsplit_once(':')?.1;
        let image = CiliumVersion::parse(tag).ok()?;
        let target = CiliumVersion::parse(target_version).ok()?;
        (image.minor_key() != target.minor_key()).then(|| {
            format!(
                "the image is Cilium {image}, the target is {target}: its sources are compiled \
                 with the target's flags and headers; give --cilium-version {image}"
            )
        })
    }

    /// One line for reports: `real Cilium tree from image quay.io/…@sha256:… (cache)`.
    pub fn describe(&self) -> String {
        match self {
            TreeOrigin::Templates => "built-in templates (a model of Cilium's datapath, the \
                                      fallback when no real tree is given: --image, \
                                      --image-archive, --bpf-dir or --bpf-tar)"
                .into(),
            TreeOrigin::Dir { path } => format!("real tree: bpf dir {path}"),
            TreeOrigin::Tar { file, inner } if inner.is_empty() => {
                format!("real tree: tar {file}")
            }
            TreeOrigin::Tar { file, inner } => format!("real tree: tar {file} ({inner}/)"),
            TreeOrigin::Image {
                reference,
                digest,
                platform,
                from,
                note,
                ..
            } => format!(
                "real tree: image {reference}@{digest} ({platform}, from the {from}{})",
                note.as_deref()
                    .map(|n| format!("; {n}"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// The image's own clang, and whether it compiles here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageToolchain {
    pub clang: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llc: Option<String>,
    /// `clang --version`'s version when it ran here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Used for the compile (it runs here).
    pub used: bool,
    /// Why it is not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
}

/// What the compile stage gets: a bpf dir (None: the templates), where it came from, and the
/// clang to use, if the source decides it.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub bpf_dir: Option<PathBuf>,
    pub origin: TreeOrigin,
    pub clang: Option<PathBuf>,
    pub image_toolchain: Option<ImageToolchain>,
    /// A `--bpf-tar` unpacked in a scratch dir lives as long as this.
    _scratch: Option<Arc<tempfile::TempDir>>,
}

impl Resolved {
    /// The built-in templates.
    pub fn templates() -> Self {
        Self::default()
    }
}

/// Resolves the request: exit-2 errors name the flag and the file or reference.
pub fn resolve(req: &Request) -> Result<Resolved, String> {
    let mut resolved = if let Some(dir) = &req.bpf_dir {
        let meta =
            std::fs::metadata(dir).map_err(|e| format!("--bpf-dir {}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!("--bpf-dir {}: not a directory", dir.display()));
        }
        Resolved {
            bpf_dir: Some(dir.clone()),
            origin: TreeOrigin::Dir {
                path: dir.display().to_string(),
            },
            ..Resolved::default()
        }
    } else if let Some(file) = &req.bpf_tar {
        from_tar(file)?
    } else if req.image.is_some() || req.image_archive.is_some() {
        from_image(req)?
    } else {
        Resolved::templates()
    };
    if req.clang_from_image && req.image.is_none() && req.image_archive.is_none() {
        return Err("--clang-from-image needs --image or --image-archive".into());
    }
    if let Some(clang) = &req.clang {
        resolved.clang = Some(clang.clone());
    }
    Ok(resolved)
}

/// Unpacks a `--bpf-tar` into a scratch dir. The tree may sit at the top, under `bpf/` or
/// under `var/lib/cilium/bpf/`.
fn from_tar(file: &Path) -> Result<Resolved, String> {
    let flag = format!("--bpf-tar {}", file.display());
    let meta = std::fs::metadata(file).map_err(|e| format!("{flag}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{flag}: not a regular file"));
    }
    let limits = tarx::Limits::TREE_TAR;
    if meta.len() > limits.raw_bytes {
        return Err(format!(
            "{flag}: {} bytes; at most {} MiB",
            meta.len(),
            limits.raw_bytes >> 20
        ));
    }
    let input = std::fs::File::open(file).map_err(|e| format!("{flag}: {e}"))?;
    let scratch = tempfile::Builder::new()
        .prefix("preflight-bpf-tar.")
        .tempdir()
        .map_err(|e| format!("scratch dir: {e}"))?;
    let raw = scratch.path().join("tar");
    std::fs::create_dir(&raw).map_err(|e| format!("scratch dir: {e}"))?;
    let mut take_all = |p: &Path, _: &tarx::Kind| tarx::Route::Take(p.to_path_buf());
    tarx::extract(&flag, input, &raw, &limits, &mut take_all)?;
    let (inner, root) = [image::BPF_DIR, "bpf", ""]
        .iter()
        .map(|prefix| (prefix.to_string(), raw.join(prefix)))
        .find(|(_, dir)| !super::tree::programs_in(dir).is_empty())
        .ok_or_else(|| {
            format!(
                "{flag}: no Cilium bpf tree in it (expected bpf_lxc.c and friends at the top, \
                 under bpf/ or under var/lib/cilium/bpf/)"
            )
        })?;
    Ok(Resolved {
        bpf_dir: Some(root),
        origin: TreeOrigin::Tar {
            file: file.display().to_string(),
            inner,
        },
        _scratch: Some(Arc::new(scratch)),
        ..Resolved::default()
    })
}

/// The image source: a registry, or an archive.
enum Source {
    Registry(Box<Registry>),
    Archive(Box<archive::Archive>),
}

impl Source {
    fn blobs(&mut self) -> &mut dyn image::Blobs {
        match self {
            Source::Registry(r) => r.as_mut(),
            Source::Archive(a) => a.as_mut(),
        }
    }
}

/// An image's tree (and toolchain), from the cache when it has them, else from the source.
fn from_image(req: &Request) -> Result<Resolved, String> {
    let cache = Cache::locate(req.cache_dir.as_deref());
    let want_tools = req.clang_from_image;
    let platform = image::host_platform();
    let (entry, from, note) = if let Some(path) = &req.image_archive {
        // Staging (and a gzip archive's decompressed copy) in the cache's tmp/.
        let staging = cache.staging()?;
        let archive = archive::Archive::open(path, staging.path())
            .map_err(|e| prefixed("--image-archive", path, e))?;
        let source_name = format!("archive {}", archive.describe());
        let meta = ImageMeta {
            reference: archive.label.clone(),
            manifest_digest: archive.digest.clone(),
            index_digest: None,
            platform: archive.platform.clone(),
            config_digest: archive.config_digest.clone(),
            layers: archive.layers.clone(),
            bpf_layers: Vec::new(),
            toolchain_layers: Vec::new(),
            source: source_name,
        };
        let mut source = Source::Archive(Box::new(archive));
        let entry = fill(&cache, staging, meta, &mut source, want_tools)
            .map_err(|e| prefixed("--image-archive", path, e))?;
        (entry, "archive".to_string(), None)
    } else {
        let text = req.image.as_deref().unwrap_or_default();
        let reference = registry::parse_reference(text)?;
        let whole = reference.whole();
        let flag = |e: String| format!("--image {text}: {e}");
        // A digest needs no network once cached (a manifest digest, or an index digest seen
        // before for this platform).
        let cached = reference.digest().and_then(|d| {
            cache.entry(d).or_else(|| {
                cache
                    .lookup_ref(&whole, &platform)
                    .and_then(|r| cache.entry(&r.manifest_digest))
            })
        });
        match cached {
            Some(entry) if !want_tools || entry.has_toolchain() => (entry, "cache".into(), None),
            cached => {
                // Downloads go to the cache's tmp/ (a cache hit by digest wrote nothing).
                let staging = cache.staging()?;
                let reg = Registry::new(reference.clone(), staging.path(), req.progress)?;
                match reg.resolve() {
                    Ok(resolved) => {
                        cache.remember_ref(&whole, &platform, &resolved.digest);
                        // The index the tag pointed at, so `@<index digest>` works offline too.
                        if let Some(index) = &resolved.index_digest {
                            let by_digest = oci_client::Reference::with_digest(
                                reference.registry().to_string(),
                                reference.repository().to_string(),
                                index.clone(),
                            );
                            cache.remember_ref(&by_digest.whole(), &platform, &resolved.digest);
                        }
                        if let Some(entry) = cache
                            .entry(&resolved.digest)
                            .filter(|e| !want_tools || e.has_toolchain())
                        {
                            (entry, "cache".into(), None)
                        } else {
                            let config = reg
                                .config(&resolved.manifest.config)
                                .map_err(|e| flag(e.message().to_string()))?;
                            let meta = ImageMeta {
                                reference: whole.clone(),
                                manifest_digest: resolved.digest.clone(),
                                index_digest: resolved.index_digest.clone(),
                                platform: config.platform(),
                                config_digest: resolved.manifest.config.digest.clone(),
                                layers: resolved
                                    .manifest
                                    .layers
                                    .iter()
                                    .map(|l| cache::LayerMeta {
                                        digest: l.digest.clone(),
                                        size: l.size,
                                        media_type: l.media_type.clone(),
                                    })
                                    .collect(),
                                bpf_layers: Vec::new(),
                                toolchain_layers: Vec::new(),
                                source: format!("registry {}", reference.resolve_registry()),
                            };
                            let mut source = Source::Registry(Box::new(reg));
                            let entry = fill(&cache, staging, meta, &mut source, want_tools)
                                .map_err(flag)?;
                            (entry, "registry".into(), None)
                        }
                    }
                    Err(PullError::Unreachable(why)) => {
                        // Offline: what this tag (or digest) resolved to last time.
                        let remembered = cached.or_else(|| {
                            cache
                                .lookup_ref(&whole, &platform)
                                .and_then(|r| cache.entry(&r.manifest_digest))
                        });
                        match remembered {
                            Some(entry) if !want_tools || entry.has_toolchain() => {
                                let note = format!("registry not reachable ({why})");
                                (entry, "cache".into(), Some(note))
                            }
                            Some(_) => {
                                return Err(flag(format!(
                                    "the image's toolchain is not in the cache and the \
                                     registry cannot be reached: {why}"
                                )));
                            }
                            None => {
                                return Err(flag(format!(
                                    "not in the cache ({}) and the registry cannot be reached: \
                                     {why}",
                                    cache.root.display()
                                )));
                            }
                        }
                    }
                    Err(PullError::Refused(why)) => return Err(flag(why)),
                }
            }
        }
    };
    let origin = TreeOrigin::Image {
        reference: req
            .image
            .clone()
            .unwrap_or_else(|| entry.meta.reference.clone()),
        digest: entry.meta.manifest_digest.clone(),
        platform: entry.meta.platform.clone(),
        from,
        note,
        path: entry.bpf_dir().display().to_string(),
    };
    let mut resolved = Resolved {
        bpf_dir: Some(entry.bpf_dir()),
        origin,
        ..Resolved::default()
    };
    if want_tools {
        let tc = image_toolchain(&entry);
        if tc.used {
            resolved.clang = Some(entry.toolchain_dir().join("clang"));
        }
        resolved.image_toolchain = Some(tc);
    }
    Ok(resolved)
}

/// `--flag PATH: what`, without naming the path twice.
fn prefixed(flag: &str, path: &Path, e: String) -> String {
    let p = path.display().to_string();
    if let Some(rest) = e.strip_prefix(&p) {
        format!("{flag} {p}{rest}")
    } else if e.contains(&p) {
        format!("{flag}: {e}")
    } else {
        format!("{flag} {p}: {e}")
    }
}

/// Takes what the cache lacks for `meta`'s image out of `source` and commits it.
fn fill(
    cache: &Cache,
    staging: tempfile::TempDir,
    meta: ImageMeta,
    source: &mut Source,
    want_tools: bool,
) -> Result<Entry, String> {
    match cache.entry(&meta.manifest_digest) {
        Some(entry) if !want_tools || entry.has_toolchain() => Ok(entry),
        Some(entry) => {
            let taken = image::take(source.blobs(), &meta.layers, staging.path(), false, true)?;
            check_toolchain_taken(staging.path(), &taken)?;
            cache.commit_toolchain(&entry, staging, taken.toolchain_layers)
        }
        None => {
            let taken = image::take(
                source.blobs(),
                &meta.layers,
                staging.path(),
                true,
                want_tools,
            )?;
            if super::tree::programs_in(&staging.path().join("bpf")).is_empty() {
                return Err(format!(
                    "no Cilium bpf tree at /{} in the image (no bpf_*.c programs)",
                    image::BPF_DIR
                ));
            }
            if want_tools {
                check_toolchain_taken(staging.path(), &taken)?;
            }
            let meta = ImageMeta {
                bpf_layers: taken.bpf_layers,
                toolchain_layers: taken.toolchain_layers,
                ..meta
            };
            cache.commit(staging, &meta)
        }
    }
}

fn check_toolchain_taken(staging: &Path, taken: &image::Taken) -> Result<(), String> {
    if staging.join("toolchain/clang").is_file() {
        return Ok(());
    }
    let why = if taken.toolchain_notes.is_empty() {
        format!(
            "no clang in the image's {}",
            image::TOOL_DIRS
                .iter()
                .map(|d| format!("/{d}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        taken.toolchain_notes.join("; ")
    };
    Err(format!("--clang-from-image: {why}"))
}

/// The ELF machine of this build (e_machine): what a binary must be built for to run here.
fn host_machine() -> Option<(u16, &'static str)> {
    match std::env::consts::ARCH {
        "x86_64" => Some((62, "x86_64")),
        "aarch64" => Some((183, "aarch64")),
        "arm" => Some((40, "arm")),
        "powerpc64" => Some((21, "ppc64")),
        "s390x" => Some((22, "s390x")),
        "riscv64" => Some((243, "riscv64")),
        _ => None,
    }
}

fn machine_name(m: u16) -> String {
    match m {
        3 => "i386".into(),
        40 => "arm".into(),
        62 => "x86_64".into(),
        183 => "aarch64".into(),
        21 => "ppc64".into(),
        22 => "s390x".into(),
        243 => "riscv64".into(),
        other => format!("ELF machine {other}"),
    }
}

/// Why a binary cannot run here, from its ELF header (None: it might).
pub fn elf_mismatch(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut head = [0u8; 20];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    if read.is_err() || head[..4] != [0x7f, b'E', b'L', b'F'] {
        return Some("not an ELF executable".into());
    }
    let machine = match head[5] {
        1 => u16::from_le_bytes([head[18], head[19]]),
        _ => u16::from_be_bytes([head[18], head[19]]),
    };
    match host_machine() {
        Some((host, name)) if host != machine => Some(format!(
            "built for {}, this machine is {name}",
            machine_name(machine)
        )),
        _ => None,
    }
}

/// Whether the image's clang runs here: its ELF header, then `clang --version` (10 s at most).
fn image_toolchain(entry: &Entry) -> ImageToolchain {
    let clang = entry.toolchain_dir().join("clang");
    let llc = entry.toolchain_dir().join("llc");
    let mut tc = ImageToolchain {
        clang: clang.display().to_string(),
        llc: llc.is_file().then(|| llc.display().to_string()),
        version: None,
        used: false,
        why_not: None,
    };
    if let Some(why) = elf_mismatch(&clang) {
        tc.why_not = Some(format!("the image's clang does not run here: {why}"));
        return tc;
    }
    match run_version(&clang) {
        Ok(version) => {
            tc.version = Some(version);
            tc.used = true;
        }
        Err(why) => tc.why_not = Some(format!("the image's clang does not run here: {why}")),
    }
    tc
}

fn run_version(tool: &Path) -> Result<String, String> {
    use std::{io::Read as _, process::Stdio, time::Duration};
    use wait_timeout::ChildExt as _;
    let mut child = std::process::Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let status = match child.wait_timeout(Duration::from_secs(10)) {
        Ok(Some(status)) => status,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            return Err("`clang --version` did not finish in 10 s".into());
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.by_ref().take(64 * 1024).read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.by_ref().take(64 * 1024).read_to_string(&mut err);
    }
    if !status.success() {
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(format!("`clang --version` exited with {status}: {last}"));
    }
    super::toolchain::parse_version(&out)
        .map(|(_, v)| v)
        .ok_or_else(|| "`--version` printed no clang version".into())
}

/// The Cilium image for a target version, for `preflight job`'s init container:
/// `quay.io/cilium/cilium:v<version>` when the version names a patch release (Cilium publishes
/// patch tags only), else None.
pub fn cilium_image(version: &str) -> Option<String> {
    let v = CiliumVersion::parse(version).ok()?;
    v.patch?;
    Some(format!("quay.io/cilium/cilium:v{v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_image_needs_a_patch_release() {
        assert_eq!(
            cilium_image("1.18.3").as_deref(),
            Some("quay.io/cilium/cilium:v1.18.3")
        );
        assert_eq!(
            cilium_image("v1.16.15").as_deref(),
            Some("quay.io/cilium/cilium:v1.16.15")
        );
        assert_eq!(cilium_image("1.19"), None);
        assert_eq!(cilium_image("banana"), None);
    }

    #[test]
    fn an_image_of_another_minor_than_the_target_is_named() {
        let image = |reference: &str| TreeOrigin::Image {
            reference: reference.into(),
            digest: String::new(),
            platform: String::new(),
            from: String::new(),
            note: None,
            path: String::new(),
        };
        let why = image("quay.io/cilium/cilium:v1.18.3")
            .version_mismatch("1.19")
            .unwrap();
        assert!(why.contains("Cilium 1.18.3") && why.contains("--cilium-version 1.18.3"));
        assert_eq!(
            image("quay.io/cilium/cilium:v1.18.3").version_mismatch("1.18"),
            None
        );
        // A registry port or a digest is not a version.
        assert_eq!(
            image("127.0.0.1:5000/cilium").version_mismatch("1.19"),
            None
        );
        assert_eq!(image("r/c:latest").version_mismatch("1.19"), None);
        assert_eq!(TreeOrigin::Templates.version_mismatch("1.19"), None);
    }

    #[test]
    fn binaries_for_another_machine_or_not_elf_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("clang");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert_eq!(
            elf_mismatch(&script).as_deref(),
            Some("not an ELF executable")
        );
        // This test binary itself runs here.
        let me = std::env::current_exe().unwrap();
        assert_eq!(elf_mismatch(&me), None);
        // The same header with another machine.
        let mut bytes = std::fs::read(&me).unwrap();
        let other: u16 = if std::env::consts::ARCH == "aarch64" {
            62
        } else {
            183
        };
        bytes[18..20].copy_from_slice(&other.to_le_bytes());
        let foreign = dir.path().join("foreign");
        std::fs::write(&foreign, &bytes[..64]).unwrap();
        let why = elf_mismatch(&foreign).unwrap();
        assert!(why.starts_with("built for "), "{why}");
    }

    #[test]
    fn a_bpf_tar_is_found_at_the_top_under_bpf_or_under_the_image_path() {
        for prefix in ["", "bpf/", "./var/lib/cilium/bpf/"] {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("t.tar");
            let mut b = tar::Builder::new(std::fs::File::create(&file).unwrap());
            for (name, data) in [("bpf_lxc.c", "int x;"), ("lib/a.h", "")] {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, format!("{prefix}{name}"), data.as_bytes())
                    .unwrap();
            }
            b.finish().unwrap();
            drop(b);
            let r = resolve(&Request {
                bpf_tar: Some(file.clone()),
                ..Request::default()
            })
            .unwrap();
            let bpf = r.bpf_dir.clone().unwrap();
            assert!(bpf.join("bpf_lxc.c").is_file(), "{prefix}");
            assert!(bpf.join("lib/a.h").is_file(), "{prefix}");
            assert!(matches!(r.origin, TreeOrigin::Tar { .. }));
            // The scratch copy goes with the last clone.
            drop(r);
            assert!(!bpf.exists(), "{prefix}");
        }
    }

    #[test]
    fn bad_tree_inputs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(&Request {
            bpf_tar: Some(dir.path().to_path_buf()),
            ..Request::default()
        })
        .unwrap_err();
        assert!(
            err.contains("--bpf-tar") && err.contains("not a regular file"),
            "{err}"
        );
        let empty = dir.path().join("empty.tar");
        std::fs::write(&empty, [0u8; 1024]).unwrap();
        let err = resolve(&Request {
            bpf_tar: Some(empty.clone()),
            ..Request::default()
        })
        .unwrap_err();
        assert!(err.contains("no Cilium bpf tree"), "{err}");
        let err = resolve(&Request {
            bpf_dir: Some(empty),
            ..Request::default()
        })
        .unwrap_err();
        assert!(
            err.contains("--bpf-dir") && err.contains("not a directory"),
            "{err}"
        );
        let err = resolve(&Request {
            clang_from_image: true,
            ..Request::default()
        })
        .unwrap_err();
        assert!(err.contains("needs --image"), "{err}");
    }
}
