//! The image cache: what was taken out of an image, kept by the digest of its manifest, and the
//! tags resolved to those digests, so a second run needs no network.
//!
//! ```text
//! <cache>/images/sha256/<manifest hex>/image.json     where it came from, its layers
//!                                     /bpf/           the image's /var/lib/cilium/bpf
//!                                     /toolchain/     its /usr/local/bin/clang and llc (on demand)
//! <cache>/refs/<sha256 of platform + reference>.json  a tag (or index digest) -> manifest digest
//! <cache>/tmp/<pid>.<random>/                         downloads and staging, renamed into place
//! ```
//! `<cache>` is `--cache-dir` (or PREFLIGHT_CACHE_DIR), else `/var/cache/preflight` as root,
//! else `$XDG_CACHE_HOME/preflight`, else `~/.cache/preflight`. Entries are written whole in
//! `tmp/` and renamed into place, so a killed run leaves no half entry (only a `tmp/` dir that
//! the next run removes when its pid is gone).
use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// One layer of an image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    pub digest: String,
    pub size: i64,
    pub media_type: String,
}

/// `image.json`: what a cache entry holds and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// The reference it was first taken for (`quay.io/cilium/cilium:v1.18.3`, an archive's tag).
    pub reference: String,
    pub manifest_digest: String,
    /// The index (manifest list) the platform's manifest was picked from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    /// `linux/amd64`, from the image config.
    pub platform: String,
    pub config_digest: String,
    /// Bottom layer first, as in the manifest.
    pub layers: Vec<LayerMeta>,
    /// The layers the bpf dir was taken from.
    pub bpf_layers: Vec<String>,
    /// The layers clang and llc were taken from (empty until asked for).
    #[serde(default)]
    pub toolchain_layers: Vec<String>,
    /// `registry 127.0.0.1:5000` or `archive /path/file.tar`.
    pub source: String,
}

/// `refs/*.json`: a tag (or an index digest) and the manifest it resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefMeta {
    pub reference: String,
    pub platform: String,
    pub manifest_digest: String,
    /// Seconds since the epoch.
    pub resolved_at: u64,
}

#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
}

/// A cached image: its dir and what it holds.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: PathBuf,
    pub meta: ImageMeta,
}

impl Entry {
    pub fn bpf_dir(&self) -> PathBuf {
        self.dir.join("bpf")
    }
    pub fn toolchain_dir(&self) -> PathBuf {
        self.dir.join("toolchain")
    }
    pub fn has_toolchain(&self) -> bool {
        self.toolchain_dir().join("clang").is_file()
    }
}

/// The hex part of a `sha256:<64 hex>` digest; anything else is refused (a digest becomes a
/// path, and it may come from a hostile manifest).
pub fn digest_hex(digest: &str) -> Result<&str, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("digest {digest:?}: only sha256 digests are supported"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "digest {digest:?} is not sha256:<64 lower-case hex>"
        ));
    }
    Ok(hex)
}

fn sha256_hex(text: &str) -> String {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads a small JSON file of ours (at most 1 MiB).
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let file = fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(1024 * 1024).read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Cache {
    /// Where the cache lives (see the module docs); nothing is created yet.
    pub fn locate(explicit: Option<&Path>) -> Self {
        let root = if let Some(dir) = explicit {
            dir.to_path_buf()
        } else if nix::unistd::geteuid().is_root() {
            PathBuf::from("/var/cache/preflight")
        } else if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
        {
            xdg.join("preflight")
        } else {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp"))
                .join(".cache/preflight")
        };
        Self { root }
    }

    fn entry_dir(&self, manifest_digest: &str) -> Result<PathBuf, String> {
        Ok(self
            .root
            .join("images/sha256")
            .join(digest_hex(manifest_digest)?))
    }

    /// The cached image with this manifest digest, if any.
    pub fn entry(&self, manifest_digest: &str) -> Option<Entry> {
        let dir = self.entry_dir(manifest_digest).ok()?;
        let meta: ImageMeta = read_json(&dir.join("image.json"))?;
        (meta.manifest_digest == manifest_digest && dir.join("bpf").is_dir())
            .then_some(Entry { dir, meta })
    }

    fn ref_path(&self, reference: &str, platform: &str) -> PathBuf {
        self.root.join("refs").join(format!(
            "{}.json",
            sha256_hex(&format!("{platform} {reference}"))
        ))
    }

    /// What `reference` resolved to last time for this platform.
    pub fn lookup_ref(&self, reference: &str, platform: &str) -> Option<RefMeta> {
        let meta: RefMeta = read_json(&self.ref_path(reference, platform))?;
        (meta.reference == reference && meta.platform == platform).then_some(meta)
    }

    /// Remembers that `reference` resolved to `manifest_digest` (best effort: a cache that
    /// cannot be written costs the next run a network round trip, nothing else).
    pub fn remember_ref(&self, reference: &str, platform: &str, manifest_digest: &str) {
        let meta = RefMeta {
            reference: reference.to_string(),
            platform: platform.to_string(),
            manifest_digest: manifest_digest.to_string(),
            resolved_at: now(),
        };
        let path = self.ref_path(reference, platform);
        let _ = self.write_json(&path, &meta);
    }

    fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), String> {
        let dir = path.parent().ok_or("no parent")?;
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let tmp = dir.join(format!(".{}.{}", std::process::id(), now()));
        let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
        fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A fresh dir under `tmp/` (same filesystem as the entries, so it can be renamed into
    /// place). Removed when dropped unless renamed away.
    pub fn staging(&self) -> Result<tempfile::TempDir, String> {
        let tmp = self.root.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| format!("cache {}: {e}", self.root.display()))?;
        sweep(&tmp);
        tempfile::Builder::new()
            .prefix(&format!("{}.", std::process::id()))
            .tempdir_in(&tmp)
            .map_err(|e| format!("cache {}: {e}", tmp.display()))
    }

    /// Moves a staged entry (`bpf/`, and `toolchain/` if taken) into place with its
    /// `image.json`. Another run that committed the same digest first wins; both hold the same
    /// bytes.
    pub fn commit(&self, staged: tempfile::TempDir, meta: &ImageMeta) -> Result<Entry, String> {
        let dir = self.entry_dir(&meta.manifest_digest)?;
        let staged = staged.keep();
        let result = (|| {
            self.write_json(&staged.join("image.json"), meta)?;
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            if dir.join("bpf").is_dir() {
                return Ok(());
            }
            // An entry without bpf/ is debris: replace it.
            let _ = fs::remove_dir_all(&dir);
            match fs::rename(&staged, &dir) {
                // Another run committed the same digest in between: its copy holds the same
                // bytes.
                Err(_) if dir.join("bpf").is_dir() => Ok(()),
                other => other.map_err(|e| format!("{}: {e}", dir.display())),
            }
        })();
        let _ = fs::remove_dir_all(&staged);
        result?;
        self.entry(&meta.manifest_digest)
            .ok_or_else(|| format!("cache entry {} did not land", dir.display()))
    }

    /// Adds a staged `toolchain/` to an existing entry and records its layers.
    pub fn commit_toolchain(
        &self,
        entry: &Entry,
        staged: tempfile::TempDir,
        layers: Vec<String>,
    ) -> Result<Entry, String> {
        let staged = staged.keep();
        let result = (|| {
            if !entry.has_toolchain() {
                let _ = fs::remove_dir_all(entry.toolchain_dir());
                fs::rename(staged.join("toolchain"), entry.toolchain_dir())
                    .map_err(|e| format!("{}: {e}", entry.toolchain_dir().display()))?;
            }
            let mut meta = entry.meta.clone();
            meta.toolchain_layers = layers;
            self.write_json(&entry.dir.join("image.json"), &meta)
        })();
        let _ = fs::remove_dir_all(&staged);
        result?;
        self.entry(&entry.meta.manifest_digest)
            .ok_or_else(|| format!("cache entry {} vanished", entry.dir.display()))
    }
}

/// Removes `tmp/<pid>.*` dirs of runs that are gone (killed mid-download).
fn sweep(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn meta() -> ImageMeta {
        ImageMeta {
            reference: "r/c:v1".into(),
            manifest_digest: D.into(),
            index_digest: None,
            platform: "linux/amd64".into(),
            config_digest: D.into(),
            layers: vec![],
            bpf_layers: vec![D.into()],
            toolchain_layers: vec![],
            source: "test".into(),
        }
    }

    #[test]
    fn digests_that_are_not_plain_sha256_hex_are_refused() {
        assert!(digest_hex(D).is_ok());
        for bad in [
            "sha256:../../etc",
            "sha512:00",
            &D.to_uppercase(),
            &format!("{D}0"),
            "0123",
        ] {
            assert!(digest_hex(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_entry_is_committed_whole_and_refs_are_remembered_per_platform() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::locate(Some(dir.path()));
        assert!(cache.entry(D).is_none());
        let staged = cache.staging().unwrap();
        fs::create_dir(staged.path().join("bpf")).unwrap();
        fs::write(staged.path().join("bpf/bpf_lxc.c"), "x").unwrap();
        let entry = cache.commit(staged, &meta()).unwrap();
        assert!(entry.bpf_dir().join("bpf_lxc.c").is_file());
        assert!(!entry.has_toolchain());
        // Nothing left in tmp/.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let staged = cache.staging().unwrap();
        fs::create_dir(staged.path().join("toolchain")).unwrap();
        fs::write(staged.path().join("toolchain/clang"), "x").unwrap();
        let entry = cache
            .commit_toolchain(&entry, staged, vec![D.into()])
            .unwrap();
        assert!(entry.has_toolchain());
        assert_eq!(entry.meta.toolchain_layers, [D]);
        cache.remember_ref("r/c:v1", "linux/amd64", D);
        assert_eq!(
            cache
                .lookup_ref("r/c:v1", "linux/amd64")
                .unwrap()
                .manifest_digest,
            D
        );
        assert!(cache.lookup_ref("r/c:v1", "linux/arm64").is_none());
        assert!(cache.lookup_ref("r/c:v2", "linux/amd64").is_none());
    }

    #[test]
    fn staging_dirs_of_dead_runs_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::locate(Some(dir.path()));
        let dead = dir.path().join(format!("tmp/{}.x", u32::MAX - 1));
        fs::create_dir_all(&dead).unwrap();
        let live = cache.staging().unwrap();
        assert!(!dead.exists() && live.path().exists());
    }
}
