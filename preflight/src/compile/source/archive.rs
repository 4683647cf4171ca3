//! Images saved to a file or a directory (`--image-archive`):
//! - `docker save` / `skopeo copy … docker-archive:` — a tar with `manifest.json`
//!   (`[{"Config": …, "RepoTags": […], "Layers": […]}]`), the config, and layer tars; the layers
//!   are checked against the config's `rootfs.diff_ids` (sha256 of each uncompressed layer),
//!   the config against its file name when that is its digest;
//! - an OCI archive (`skopeo copy … oci-archive:`, `docker save` since 25.0) — a tar of an OCI
//!   image layout: `oci-layout`, `index.json`, `blobs/sha256/<hex>`; every blob is checked
//!   against its digest;
//! - an OCI image layout directory (`skopeo copy … oci:DIR`).
//!
//! A gzip-compressed archive (`docker save | gzip`) is decompressed into the cache's `tmp/`
//! first (tar needs to seek). The tar is indexed once (entry offsets, not contents); only the
//! manifest, config and the layers needed are read.
use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead, BufReader, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::{
    cache::{LayerMeta, digest_hex},
    image::{Blobs, Check, host_platform},
    registry::{ImageConfig, MAX_CONFIG_BYTES, MAX_LAYERS},
    tarx,
};

/// At most this many entries in an archive's tar (an image is a few dozen).
const MAX_ENTRIES: u64 = 100_000;
/// manifest.json / index.json / a manifest: small JSON.
const MAX_JSON: u64 = 4 * 1024 * 1024;

/// Where the archive's files are.
enum Store {
    /// A tar: entry name → (offset of its data, size).
    Tar {
        path: PathBuf,
        entries: HashMap<String, (u64, u64)>,
    },
    /// An OCI layout directory.
    Dir(PathBuf),
}

impl Store {
    fn describe(&self) -> String {
        match self {
            Store::Tar { path, .. } | Store::Dir(path) => path.display().to_string(),
        }
    }

    fn has(&self, name: &str) -> bool {
        match self {
            Store::Tar { entries, .. } => entries.contains_key(name),
            Store::Dir(dir) => std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.is_file()),
        }
    }

    fn open(&self, name: &str) -> Result<(Box<dyn Read + '_>, u64), String> {
        let missing = || format!("{}: no {name} in it", self.describe());
        match self {
            Store::Tar { path, entries } => {
                let (offset, size) = *entries.get(name).ok_or_else(missing)?;
                let mut f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Ok((Box::new(f.take(size)), size))
            }
            Store::Dir(dir) => {
                let p = dir.join(name);
                let m = std::fs::symlink_metadata(&p).map_err(|_| missing())?;
                if !m.is_file() {
                    return Err(format!("{}: not a regular file", p.display()));
                }
                let f = File::open(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                Ok((Box::new(f), m.len()))
            }
        }
    }

    fn read_small(&self, name: &str, cap: u64) -> Result<Vec<u8>, String> {
        let (r, size) = self.open(name)?;
        if size > cap {
            return Err(format!(
                "{}: {name} is {size} bytes; at most {cap}",
                self.describe()
            ));
        }
        let mut out = Vec::new();
        r.take(cap)
            .read_to_end(&mut out)
            .map_err(|e| format!("{}: {name}: {e}", self.describe()))?;
        Ok(out)
    }

    /// A blob named by digest, checked against it.
    fn read_blob(&self, digest: &str, cap: u64) -> Result<Vec<u8>, String> {
        let name = format!("blobs/sha256/{}", digest_hex(digest)?);
        let bytes = self.read_small(&name, cap)?;
        let got = tarx::sha256_of(&bytes[..], cap, "blob").map_err(|e| e.to_string())?;
        if got != digest {
            return Err(format!(
                "{}: {name}: digest mismatch: expected {digest}, got {got}; refusing the image",
                self.describe()
            ));
        }
        Ok(bytes)
    }
}

/// An image read from an archive: what to take and where its layers are.
pub struct Archive {
    store: Store,
    /// Per layer: the entry holding it, and how it is checked.
    layer_entries: Vec<(String, Check)>,
    pub layers: Vec<LayerMeta>,
    /// The manifest digest (OCI) or the config digest, Docker's image ID (docker-archive,
    /// which has no manifest): the cache key.
    pub digest: String,
    pub config_digest: String,
    pub platform: String,
    /// The image's name in the archive (RepoTags, `org.opencontainers.image.ref.name`), else
    /// the file name.
    pub label: String,
    pub format: &'static str,
    /// A decompressed copy of a gzip archive, removed when dropped.
    _decompressed: Option<tempfile::NamedTempFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    platform: Option<PlatformJson>,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct PlatformJson {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct ImageManifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Indexes a tar's regular files (offsets only; nothing is read but headers).
fn index_tar(path: &Path) -> Result<HashMap<String, (u64, u64)>, String> {
    let fail = |e: String| format!("{}: {e}", path.display());
    let file = File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut archive = tar::Archive::new(file);
    let mut out = HashMap::new();
    let mut count = 0u64;
    for entry in archive
        .entries_with_seek()
        .map_err(|e| fail(e.to_string()))?
    {
        let entry = entry.map_err(|e| fail(format!("not a tar archive: {e}")))?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(fail(format!("more than {MAX_ENTRIES} entries")));
        }
        if !matches!(
            entry.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        ) {
            continue;
        }
        let raw = entry.path().map_err(|e| fail(e.to_string()))?.into_owned();
        let name = tarx::clean_path(&raw).map_err(|e| fail(format!("entry {e}")))?;
        out.insert(
            name.to_string_lossy().into_owned(),
            (entry.raw_file_position(), entry.size()),
        );
    }
    if out.is_empty() {
        return Err(fail("an empty archive".into()));
    }
    Ok(out)
}

impl Archive {
    /// Opens `path` (a file or an OCI layout dir) and reads its manifest and config; `tmp` is
    /// where a gzip archive is decompressed.
    pub fn open(path: &Path, tmp: &Path) -> Result<Self, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut decompressed = None;
        let store = if meta.is_dir() {
            Store::Dir(path.to_path_buf())
        } else if meta.is_file() {
            let mut f =
                BufReader::new(File::open(path).map_err(|e| format!("{}: {e}", path.display()))?);
            let gz = f
                .fill_buf()
                .map(|b| b.starts_with(&[0x1f, 0x8b]))
                .unwrap_or(false);
            let tar_path = if gz {
                let mut out = tempfile::NamedTempFile::new_in(tmp)
                    .map_err(|e| format!("{}: {e}", tmp.display()))?;
                let limit = tarx::Limits::LAYER.stream_bytes;
                let copied = std::io::copy(
                    &mut flate2::bufread::MultiGzDecoder::new(f).take(limit + 1),
                    out.as_file_mut(),
                )
                .map_err(|e| format!("{}: {e}", path.display()))?;
                if copied > limit {
                    return Err(format!(
                        "{}: more than {} MiB decompressed",
                        path.display(),
                        limit >> 20
                    ));
                }
                let p = out.path().to_path_buf();
                decompressed = Some(out);
                p
            } else {
                path.to_path_buf()
            };
            Store::Tar {
                entries: index_tar(&tar_path)?,
                path: tar_path,
            }
        } else {
            return Err(format!(
                "{}: not a regular file or directory",
                path.display()
            ));
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut archive = if store.has("index.json") && store.has("oci-layout") {
            Self::oci(store, name)?
        } else if store.has("manifest.json") {
            Self::docker(store, name)?
        } else {
            return Err(format!(
                "{}: neither a docker archive (manifest.json) nor an OCI layout (oci-layout, \
                 index.json)",
                path.display()
            ));
        };
        archive._decompressed = decompressed;
        Ok(archive)
    }

    fn docker(store: Store, name: String) -> Result<Self, String> {
        let at = store.describe();
        let text = store.read_small("manifest.json", MAX_JSON)?;
        let manifests: Vec<DockerManifest> =
            serde_json::from_slice(&text).map_err(|e| format!("{at}: manifest.json: {e}"))?;
        let [m] = &manifests[..] else {
            let tags: Vec<String> = manifests
                .iter()
                .flat_map(|m| m.repo_tags.clone().unwrap_or_default())
                .collect();
            return Err(format!(
                "{at}: {} images in the archive ({}); save one image per file",
                manifests.len(),
                tags.join(", ")
            ));
        };
        if m.layers.len() > MAX_LAYERS {
            return Err(format!(
                "{at}: {} layers; at most {MAX_LAYERS}",
                m.layers.len()
            ));
        }
        let config_name = tarx::clean_path(Path::new(&m.config))
            .map_err(|e| format!("{at}: Config {e}"))?
            .to_string_lossy()
            .into_owned();
        let config_bytes = store.read_small(&config_name, MAX_CONFIG_BYTES as u64)?;
        let config_digest =
            tarx::sha256_of(&config_bytes[..], u64::MAX, "config").map_err(|e| e.to_string())?;
        // The config's file name is its digest (`<hex>.json`, `blobs/sha256/<hex>`): check it.
        let named = config_name
            .rsplit('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".json");
        if named.len() == 64 && format!("sha256:{named}") != config_digest {
            return Err(format!(
                "{at}: {config_name}: digest mismatch: the name says sha256:{named}, the \
                 content is {config_digest}; refusing the image"
            ));
        }
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| format!("{at}: {config_name}: {e}"))?;
        if config.rootfs.diff_ids.len() != m.layers.len() {
            return Err(format!(
                "{at}: {} layers but {} diff ids in the config",
                m.layers.len(),
                config.rootfs.diff_ids.len()
            ));
        }
        let mut layers = Vec::new();
        let mut layer_entries = Vec::new();
        for (layer, diff_id) in m.layers.iter().zip(&config.rootfs.diff_ids) {
            digest_hex(diff_id).map_err(|e| format!("{at}: {e}"))?;
            let entry = tarx::clean_path(Path::new(layer))
                .map_err(|e| format!("{at}: Layers {e}"))?
                .to_string_lossy()
                .into_owned();
            let (_, size) = store.open(&entry)?;
            layers.push(LayerMeta {
                digest: diff_id.clone(),
                size: size as i64,
                media_type: "application/vnd.docker.image.rootfs.diff.tar".into(),
            });
            layer_entries.push((entry, Check::DiffId(diff_id.clone())));
        }
        let label = m
            .repo_tags
            .as_ref()
            .and_then(|t| t.first().cloned())
            .unwrap_or(name);
        Ok(Self {
            store,
            layer_entries,
            layers,
            digest: config_digest.clone(),
            config_digest,
            platform: config.platform(),
            label,
            format: "docker-archive",
            _decompressed: None,
        })
    }

    fn oci(store: Store, name: String) -> Result<Self, String> {
        let at = store.describe();
        let index: Index = serde_json::from_slice(&store.read_small("index.json", MAX_JSON)?)
            .map_err(|e| format!("{at}: index.json: {e}"))?;
        let want = host_platform();
        let pick = |entries: &[Descriptor]| -> Result<usize, String> {
            if let Some(i) = entries.iter().position(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| format!("{}/{}", p.os, p.architecture) == want)
            }) {
                return Ok(i);
            }
            match entries.len() {
                1 => Ok(0),
                n => Err(format!(
                    "{at}: {n} images and none for {want}; save one image per file"
                )),
            }
        };
        let outer = &index.manifests[pick(&index.manifests)?];
        // The name sits on the index.json entry (skopeo, docker save).
        let label = label_of(outer.annotations.as_ref(), &name);
        let nested: Index;
        let entry = if INDEX_TYPES.contains(&outer.media_type.as_str()) {
            nested = serde_json::from_slice(&store.read_blob(&outer.digest, MAX_JSON)?)
                .map_err(|e| format!("{at}: index {}: {e}", outer.digest))?;
            &nested.manifests[pick(&nested.manifests)?]
        } else {
            outer
        };
        if entry.size > MAX_JSON as i64 {
            return Err(format!("{at}: manifest of {} bytes", entry.size));
        }
        let manifest: ImageManifest =
            serde_json::from_slice(&store.read_blob(&entry.digest, MAX_JSON)?)
                .map_err(|e| format!("{at}: manifest {}: {e}", entry.digest))?;
        if manifest.layers.len() > MAX_LAYERS {
            return Err(format!(
                "{at}: {} layers; at most {MAX_LAYERS}",
                manifest.layers.len()
            ));
        }
        let config: ImageConfig = serde_json::from_slice(
            &store.read_blob(&manifest.config.digest, MAX_CONFIG_BYTES as u64)?,
        )
        .map_err(|e| format!("{at}: config {}: {e}", manifest.config.digest))?;
        let mut layers = Vec::new();
        let mut layer_entries = Vec::new();
        for l in &manifest.layers {
            let hex = digest_hex(&l.digest).map_err(|e| format!("{at}: {e}"))?;
            layers.push(LayerMeta {
                digest: l.digest.clone(),
                size: l.size,
                media_type: l.media_type.clone(),
            });
            layer_entries.push((format!("blobs/sha256/{hex}"), Check::Blob(l.digest.clone())));
        }
        Ok(Self {
            layer_entries,
            layers,
            digest: entry.digest.clone(),
            config_digest: manifest.config.digest.clone(),
            platform: config.platform(),
            label,
            format: "oci",
            store,
            _decompressed: None,
        })
    }

    pub fn describe(&self) -> String {
        self.store.describe()
    }
}

fn label_of(annotations: Option<&HashMap<String, String>>, fallback: &str) -> String {
    annotations
        .and_then(|a| {
            a.get("io.containerd.image.name")
                .or_else(|| a.get("org.opencontainers.image.ref.name"))
        })
        .cloned()
        .unwrap_or_else(|| fallback.to_string())
}

impl Blobs for Archive {
    fn open_layer(
        &mut self,
        index: usize,
        _layer: &LayerMeta,
    ) -> Result<(Box<dyn Read + '_>, Check), String> {
        let (entry, check) = self
            .layer_entries
            .get(index)
            .ok_or_else(|| format!("no layer {index}"))?
            .clone();
        let (reader, _) = self.store.open(&entry)?;
        Ok((reader, check))
    }
}
