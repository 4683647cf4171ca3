//! Compiled objects kept across runs, keyed by everything that decides them: the tree's digest
//! (sources and the feature headers written into the working copy), the generated headers, the
//! clang command line (scratch paths normalised), and the compiler (path, version, size and
//! modification time of the binary). A re-run with nothing changed skips clang.
//!
//! Where: `<cache>/objects`, beside the image cache (compile/source/cache.rs): `<cache>` is
//! `--cache-dir` / `$PREFLIGHT_CACHE_DIR`, else `/var/cache/preflight` as root, else
//! `$XDG_CACHE_HOME/preflight`, else `~/.cache/preflight`. Each entry is a
//! directory named by the key (`object.o`, `stderr.txt`, `status`), written under a temporary
//! name and renamed into place, so a killed run never leaves half an entry. The cache is capped
//! ([`MAX_BYTES`]); the oldest entries go first. Anything unreadable is a miss, never an error.
use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use sha2::{Digest, Sha256};

/// Total size kept (objects with debug info are 0.5–3 MiB each).
pub const MAX_BYTES: u64 = 512 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheMode {
    /// The default location (see the module docs).
    Default,
    Off,
    Dir(PathBuf),
}

impl CacheMode {
    /// The directory to use, or None when caching is off or no location can be found.
    pub fn dir(&self) -> Option<PathBuf> {
        match self {
            Self::Off => None,
            Self::Dir(d) => Some(d.clone()),
            Self::Default => default_dir(),
        }
    }
}

fn default_dir() -> Option<PathBuf> {
    let explicit = std::env::var_os("PREFLIGHT_CACHE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    Some(objects_dir(
        &super::source::cache::Cache::locate(explicit.as_deref()).root,
    ))
}

/// The object cache inside a preflight cache dir.
pub fn objects_dir(cache_root: &Path) -> PathBuf {
    cache_root.join("objects")
}

/// An entry's name: a sha256 in hex (anything else in the dir is not ours to evict).
fn is_key(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What a cached compile gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub success: bool,
    pub stderr: String,
    pub object: Option<Vec<u8>>,
}

/// The compiler's identity: its path, `--version` line, and the binary's size and mtime (a
/// reinstalled clang of the same version is another key only if the file changed).
pub fn compiler_identity(clang: &Path, version: &str) -> String {
    let meta = std::fs::metadata(clang).ok();
    let mtime = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}|{version}|{}|{mtime}",
        clang.display(),
        meta.map(|m| m.len()).unwrap_or(0)
    )
}

/// Bumped whenever what an entry holds changes meaning (v2: run paths in stderr replaced by
/// placeholders).
const FORMAT: &[u8] = b"preflight-objects-v2";

/// The cache key over the given parts (already normalised by the caller).
pub fn key(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT);
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    format!("{:x}", h.finalize())
}

pub fn lookup(dir: &Path, key: &str) -> Option<Entry> {
    let entry = dir.join(key);
    let status = std::fs::read_to_string(entry.join("status")).ok()?;
    let success = match status.trim() {
        "ok" => true,
        "failed" => false,
        _ => return None,
    };
    let stderr = std::fs::read_to_string(entry.join("stderr.txt")).ok()?;
    let object = if success {
        Some(std::fs::read(entry.join("object.o")).ok()?)
    } else {
        None
    };
    // Touch it so eviction keeps what is used.
    let _ =
        std::fs::File::open(entry.join("status")).and_then(|f| f.set_modified(SystemTime::now()));
    Some(Entry {
        success,
        stderr,
        object,
    })
}

/// Stores an entry; failures to write are ignored (a cache, not a record).
pub fn store(dir: &Path, key: &str, entry: &Entry) {
    let final_dir = dir.join(key);
    if final_dir.exists() || std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(tmp) = tempfile::Builder::new().prefix(".tmp-").tempdir_in(dir) else {
        return;
    };
    let ok = std::fs::write(tmp.path().join("stderr.txt"), &entry.stderr).is_ok()
        && entry
            .object
            .as_ref()
            .is_none_or(|o| std::fs::write(tmp.path().join("object.o"), o).is_ok())
        && std::fs::write(
            tmp.path().join("status"),
            if entry.success { "ok\n" } else { "failed\n" },
        )
        .is_ok();
    if ok {
        let kept = tmp.keep();
        if std::fs::rename(&kept, &final_dir).is_err() {
            let _ = std::fs::remove_dir_all(&kept);
        }
    }
    evict(dir, MAX_BYTES);
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Removes the least recently used entries until the cache is under `max` bytes.
pub fn evict(dir: &Path, max: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut all: Vec<(SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| is_key(&e.file_name().to_string_lossy()))
        .map(|e| {
            let used = std::fs::metadata(e.path().join("status"))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            (used, dir_size(&e.path()), e.path())
        })
        .collect();
    let mut total: u64 = all.iter().map(|(_, size, _)| size).sum();
    if total <= max {
        return;
    }
    all.sort();
    for (_, size, path) in all {
        if total <= max {
            break;
        }
        if std::fs::remove_dir_all(&path).is_ok() {
            total = total.saturating_sub(size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_the_oldest_are_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let e = Entry {
            success: true,
            stderr: "warning: x\n".into(),
            object: Some(vec![0x7f, b'E', b'L', b'F']),
        };
        let k = key(&[b"tree", b"headers"]);
        assert_ne!(k, key(&[b"treeh", b"eaders"]), "parts are length-prefixed");
        assert_eq!(lookup(dir.path(), &k), None);
        store(dir.path(), &k, &e);
        assert_eq!(lookup(dir.path(), &k), Some(e.clone()));
        let failed = Entry {
            success: false,
            stderr: "error: y\n".into(),
            object: None,
        };
        let other = key(&[b"other"]);
        store(dir.path(), &other, &failed);
        assert_eq!(lookup(dir.path(), &other), Some(failed));
        // A half-written entry (no status) is a miss.
        let half = key(&[b"half"]);
        std::fs::create_dir_all(dir.path().join(&half)).unwrap();
        assert_eq!(lookup(dir.path(), &half), None);
        // Not an entry: never evicted (the image cache may share the parent).
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        // Make `k` the oldest, then cap the cache below both entries' size.
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1);
        std::fs::File::open(dir.path().join(&k).join("status"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        evict(dir.path(), 20);
        assert!(!dir.path().join(&k).exists(), "oldest evicted");
        assert!(dir.path().join(&other).exists());
        evict(dir.path(), 0);
        assert!(dir.path().join("images").exists());
        assert_eq!(CacheMode::Off.dir(), None);
    }
}
