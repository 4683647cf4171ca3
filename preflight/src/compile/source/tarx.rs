//! Bounded, confined tar extraction: `--bpf-tar` files and image layers.
//!
//! The input is hostile until proven otherwise: every entry path is made relative and checked
//! (no absolute paths, no `..`), nothing is written through a symlink, a symlink may only point
//! inside the tree it is part of, hard links only to files taken from the same archive, and the
//! entry count, each file, the bytes written and the bytes read after decompression are capped.
//! gzip is recognised by its magic bytes (media types and file names lie); zstd is refused by
//! name. Both the raw and the decompressed stream are hashed, so the caller can check a blob
//! digest and a layer's diff id after the fact — it extracts into a staging dir and keeps the
//! result only when they match.
use std::{
    fs,
    io::{self, BufRead, BufReader, Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Component, Path, PathBuf},
};

use sha2::{Digest as _, Sha256};

/// Caps on one archive.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries read (taken or not).
    pub entries: u64,
    /// One file taken.
    pub file_bytes: u64,
    /// All files taken together.
    pub total_bytes: u64,
    /// The tar stream after decompression (a gzip bomb stops here).
    pub stream_bytes: u64,
    /// The raw input (a blob or file larger than this is refused while reading).
    pub raw_bytes: u64,
}

const MIB: u64 = 1024 * 1024;

impl Limits {
    /// A `--bpf-tar` file: a Cilium bpf tree is ~500 files and ~20 MiB unpacked.
    pub const TREE_TAR: Limits = Limits {
        entries: 50_000,
        file_bytes: 64 * MIB,
        total_bytes: 512 * MIB,
        stream_bytes: 1024 * MIB,
        raw_bytes: 256 * MIB,
    };
    /// An image layer: Cilium's base layer holds a whole Ubuntu plus LLVM (~400 MiB unpacked);
    /// only the bpf dir and the two compiler binaries are written.
    pub const LAYER: Limits = Limits {
        entries: 500_000,
        file_bytes: 1024 * MIB,
        total_bytes: 2048 * MIB,
        stream_bytes: 8192 * MIB,
        raw_bytes: 4096 * MIB,
    };
}

/// What an entry is, as far as routing needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// Symbolic link with its target as written.
    Symlink(PathBuf),
    /// Hard link to another entry of the same archive (its cleaned path).
    Hardlink(PathBuf),
    /// Devices, FIFOs and the like: never written.
    Other,
}

/// Where an entry goes: nowhere, or to this path relative to the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Skip,
    Take(PathBuf),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
}

/// `sha256:<hex>` of the raw input and of the tar stream after decompression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub raw: String,
    pub plain: String,
}

/// An entry path made relative: `./a/b` and `a/b` are `a/b`; `/a`, `a/../b` are refused (an
/// archive has no business naming them). The archive's root (`.`, `./`) is the empty path.
pub fn clean_path(raw: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("absolute path {}", raw.display()));
            }
            Component::ParentDir => {
                return Err(format!("path {} climbs out with '..'", raw.display()));
            }
        }
    }
    Ok(out)
}

/// Where a symlink at `link` (relative to the tree root) pointing to `target` lands, or None
/// when it leaves the tree (absolute, or `..` past the root).
pub fn symlink_inside(link: &Path, target: &Path) -> Option<PathBuf> {
    if target.is_absolute() {
        return None;
    }
    let mut at: Vec<_> = link
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(_) => at.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                at.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(at.iter().collect())
}

/// Counts and caps the bytes read.
struct Capped<R> {
    inner: R,
    left: u64,
    what: &'static str,
    cap: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // Past the cap only if there is more to read.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!(
                    "{} is larger than {} MiB",
                    self.what,
                    self.cap / MIB
                ))),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Hashes everything read through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn hex_digest(h: Sha256) -> String {
    let bytes = h.finalize();
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The tar stream: gzip-decompressed or as is.
enum Plain<R: BufRead> {
    Gzip(flate2::bufread::MultiGzDecoder<R>),
    Tar(R),
}

impl<R: BufRead> Read for Plain<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Plain::Gzip(d) => d.read(buf),
            Plain::Tar(r) => r.read(buf),
        }
    }
}

impl<R: BufRead> Plain<R> {
    fn into_inner(self) -> R {
        match self {
            Plain::Gzip(d) => d.into_inner(),
            Plain::Tar(r) => r,
        }
    }
}

/// Which compression the first bytes announce.
fn sniff<R: BufRead>(r: &mut R) -> Result<bool, String> {
    let head = r.fill_buf().map_err(|e| e.to_string())?;
    match head {
        [0x1f, 0x8b, ..] => Ok(true),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            Err("zstd-compressed: not supported (gzip or plain tar only)".into())
        }
        _ => Ok(false),
    }
}

/// Creates `rel`'s parent directories under `root`, refusing to pass through anything that is
/// not a real directory (a symlink planted by an earlier entry would redirect the write).
fn make_parents(root: &Path, rel: &Path) -> Result<(), String> {
    let mut at = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "{} is not a directory (a link or file from an earlier entry)",
                    rel_display(root, &at)
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&at).map_err(|e| format!("{}: {e}", at.display()))?;
            }
            Err(e) => return Err(format!("{}: {e}", at.display())),
        }
    }
    Ok(())
}

fn rel_display(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Removes whatever an earlier entry put at `path` (a later entry of the same archive wins).
fn clear(path: &Path) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(format!("{} is already a directory", path.display())),
        Ok(_) => fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display())),
        Err(_) => Ok(()),
    }
}

/// An extraction that failed, with what could still be hashed: a corrupt blob is better
/// explained by its digest than by the tar error its corruption caused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// sha256 of the whole raw input, when it could be read to its end.
    pub raw: Option<String>,
    /// sha256 of the whole decompressed stream, when it could be decompressed to its end.
    pub plain: Option<String>,
}

impl From<Failure> for String {
    fn from(f: Failure) -> String {
        f.message
    }
}

/// The reader chain: raw input, hashed and capped → gzip or not → capped and hashed.
type Chain<R> = Hashing<Capped<Plain<BufReader<Hashing<Capped<R>>>>>>;

/// Extracts the entries `route` takes from the tar (or tar.gz) `input` into `dest`, which must
/// exist. `name` is how errors call the archive (a file name, a layer digest). Reads the input
/// to its end, so the digests cover all of it (on failure too, as far as it can).
pub fn extract<R: Read>(
    name: &str,
    input: R,
    dest: &Path,
    limits: &Limits,
    route: &mut dyn FnMut(&Path, &Kind) -> Route,
) -> Result<(Stats, Digests), Failure> {
    let fail = |e: String| format!("{name}: {e}");
    let raw = Hashing {
        inner: Capped {
            inner: input,
            left: limits.raw_bytes,
            what: "the archive",
            cap: limits.raw_bytes,
        },
        hash: Sha256::new(),
    };
    let mut buffered = BufReader::with_capacity(256 * 1024, raw);
    let gzip = sniff(&mut buffered).map_err(|e| Failure {
        message: fail(e),
        raw: None,
        plain: None,
    })?;
    let plain = if gzip {
        Plain::Gzip(flate2::bufread::MultiGzDecoder::new(buffered))
    } else {
        Plain::Tar(buffered)
    };
    let plain = Hashing {
        inner: Capped {
            inner: plain,
            left: limits.stream_bytes,
            what: "the tar stream after decompression",
            cap: limits.stream_bytes,
        },
        hash: Sha256::new(),
    };
    let mut archive = tar::Archive::new(plain);
    let result = entries(&mut archive, &fail, dest, limits, route);
    // Drain what tar did not read (end-of-archive padding, trailing gzip members; after an
    // error, the rest) so the digests cover the whole input.
    let (raw, plain) = finish(archive.into_inner());
    match result {
        Ok(stats) => match (raw, plain) {
            (Some(raw), Some(plain)) => Ok((stats, Digests { raw, plain })),
            (raw, plain) => Err(Failure {
                message: fail("could not be read to its end".into()),
                raw,
                plain,
            }),
        },
        Err(message) => Err(Failure {
            message,
            raw,
            plain,
        }),
    }
}

/// Reads both hashed streams to their end: (raw digest, decompressed digest), each None when
/// its stream fails first.
fn finish<R: Read>(mut plain: Chain<R>) -> (Option<String>, Option<String>) {
    let plain_ok = io::copy(&mut plain, &mut io::sink()).is_ok();
    let plain_digest = plain_ok.then(|| hex_digest(plain.hash.clone()));
    let mut raw = plain.inner.inner.into_inner().into_inner();
    let raw_ok = io::copy(&mut raw, &mut io::sink()).is_ok();
    (raw_ok.then(|| hex_digest(raw.hash)), plain_digest)
}

fn entries<R: Read>(
    archive: &mut tar::Archive<Chain<R>>,
    fail: &dyn Fn(String) -> String,
    dest: &Path,
    limits: &Limits,
    route: &mut dyn FnMut(&Path, &Kind) -> Route,
) -> Result<Stats, String> {
    let mut stats = Stats::default();
    // Paths taken from this archive (destination-relative), for hard links.
    let mut taken: std::collections::HashMap<PathBuf, PathBuf> = Default::default();
    let entries = archive.entries().map_err(|e| fail(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| fail(e.to_string()))?;
        stats.entries += 1;
        if stats.entries > limits.entries {
            return Err(fail(format!("more than {} entries", limits.entries)));
        }
        let raw_path = entry.path().map_err(|e| fail(e.to_string()))?.into_owned();
        let path = clean_path(&raw_path).map_err(|e| fail(format!("entry {e}")))?;
        let header = entry.header();
        let link = || -> Result<PathBuf, String> {
            entry
                .link_name()
                .map_err(|e| e.to_string())?
                .map(|l| l.into_owned())
                .ok_or_else(|| format!("entry {} has no link target", path.display()))
        };
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink(link().map_err(fail)?),
            tar::EntryType::Link => Kind::Hardlink(
                clean_path(&link().map_err(fail)?)
                    .map_err(|e| fail(format!("hard link {}: {e}", path.display())))?,
            ),
            _ => Kind::Other,
        };
        let mode = header.mode().unwrap_or(0o644);
        let size = header.size().unwrap_or(0);
        let Route::Take(rel) = route(&path, &kind) else {
            continue;
        };
        if rel.as_os_str().is_empty() || matches!(kind, Kind::Other) {
            continue;
        }
        let target = dest.join(&rel);
        make_parents(dest, &rel).map_err(fail)?;
        match &kind {
            Kind::Dir => match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(fail(format!(
                        "{} is a directory here and something else earlier",
                        path.display()
                    )));
                }
                Err(_) => fs::create_dir(&target).map_err(|e| fail(e.to_string()))?,
            },
            Kind::File => {
                if size > limits.file_bytes {
                    return Err(fail(format!(
                        "{} is {size} bytes; at most {} MiB per file",
                        path.display(),
                        limits.file_bytes / MIB
                    )));
                }
                stats.bytes += size;
                if stats.bytes > limits.total_bytes {
                    return Err(fail(format!(
                        "more than {} MiB of files",
                        limits.total_bytes / MIB
                    )));
                }
                clear(&target).map_err(fail)?;
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&target)
                    .map_err(|e| fail(format!("{}: {e}", target.display())))?;
                let copied = io::copy(&mut (&mut entry).take(size), &mut out)
                    .map_err(|e| fail(format!("{}: {e}", path.display())))?;
                if copied != size {
                    return Err(fail(format!("{} is cut short", path.display())));
                }
                out.flush().map_err(|e| fail(e.to_string()))?;
                // Owner read/write, the exec bits as archived, nothing group/world-writable.
                let perm = (mode & 0o755) | 0o600;
                fs::set_permissions(&target, fs::Permissions::from_mode(perm))
                    .map_err(|e| fail(e.to_string()))?;
                stats.files += 1;
                taken.insert(path.clone(), rel.clone());
            }
            Kind::Symlink(to) => {
                if symlink_inside(&rel, to).is_none() {
                    return Err(fail(format!(
                        "symlink {} -> {} points outside the tree",
                        path.display(),
                        to.display()
                    )));
                }
                clear(&target).map_err(fail)?;
                std::os::unix::fs::symlink(to, &target).map_err(|e| fail(e.to_string()))?;
            }
            Kind::Hardlink(to) => {
                let Some(source) = taken.get(to) else {
                    return Err(fail(format!(
                        "hard link {} -> {}: the target is not part of what is extracted",
                        path.display(),
                        to.display()
                    )));
                };
                clear(&target).map_err(fail)?;
                fs::copy(dest.join(source), &target).map_err(|e| fail(e.to_string()))?;
                stats.files += 1;
                taken.insert(path.clone(), rel.clone());
            }
            Kind::Other => {}
        }
    }
    Ok(stats)
}

/// sha256 of a whole reader, as `sha256:<hex>`, reading at most `cap` bytes.
pub fn sha256_of<R: Read>(input: R, cap: u64, what: &'static str) -> io::Result<String> {
    let mut h = Hashing {
        inner: Capped {
            inner: input,
            left: cap,
            what,
            cap,
        },
        hash: Sha256::new(),
    };
    io::copy(&mut h, &mut io::sink())?;
    Ok(hex_digest(h.hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar built entry by entry, with paths the `tar` crate's safe setters would refuse.
    struct Raw(tar::Builder<Vec<u8>>);

    impl Raw {
        fn new() -> Self {
            Self(tar::Builder::new(Vec::new()))
        }
        fn entry(&mut self, path: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) {
            let mut h = tar::Header::new_gnu();
            {
                let gnu = h.as_gnu_mut().unwrap();
                gnu.name[..path.len()].copy_from_slice(path.as_bytes());
            }
            h.set_entry_type(kind);
            h.set_mode(0o755);
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.as_gnu_mut().unwrap().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            self.0.append(&h, data).unwrap();
        }
        fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
            self.entry(path, tar::EntryType::Regular, None, data);
            self
        }
        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn take_all(p: &Path, _: &Kind) -> Route {
        Route::Take(p.to_path_buf())
    }

    #[test]
    fn paths_are_made_relative_and_escapes_refused() {
        assert_eq!(
            clean_path(Path::new("./bpf/a.c")).unwrap(),
            Path::new("bpf/a.c")
        );
        assert_eq!(clean_path(Path::new(".")).unwrap(), Path::new(""));
        assert!(clean_path(Path::new("/etc/passwd")).is_err());
        assert!(clean_path(Path::new("bpf/../../x")).is_err());
        assert_eq!(
            symlink_inside(Path::new("a/b/l"), Path::new("../c")),
            Some(PathBuf::from("a/c"))
        );
        assert_eq!(symlink_inside(Path::new("a/l"), Path::new("../../x")), None);
        assert_eq!(symlink_inside(Path::new("l"), Path::new("/etc")), None);
    }

    #[test]
    fn a_gzip_tar_extracts_with_both_digests() {
        let mut t = Raw::new();
        t.file("bpf/bpf_lxc.c", b"int x;\n")
            .file("bpf/lib/a.h", b"#pragma once\n");
        let plain = t.bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (stats, digests) = extract(
            "t.tar.gz",
            &gz[..],
            dir.path(),
            &Limits::TREE_TAR,
            &mut take_all,
        )
        .unwrap();
        assert_eq!((stats.files, stats.bytes), (2, 20));
        assert_eq!(
            fs::read_to_string(dir.path().join("bpf/bpf_lxc.c")).unwrap(),
            "int x;\n"
        );
        assert_eq!(digests.raw, sha256_of(&gz[..], u64::MAX, "x").unwrap());
        assert_eq!(digests.plain, sha256_of(&plain[..], u64::MAX, "x").unwrap());
    }

    #[test]
    fn traversal_absolute_and_escaping_links_are_refused_by_entry() {
        for (build, needle) in [
            (
                {
                    let mut t = Raw::new();
                    t.file("../evil", b"x");
                    t
                },
                "climbs out",
            ),
            (
                {
                    let mut t = Raw::new();
                    t.file("/etc/evil", b"x");
                    t
                },
                "absolute path /etc/evil",
            ),
            (
                {
                    let mut t = Raw::new();
                    t.entry("bpf/l", tar::EntryType::Symlink, Some("/etc"), b"");
                    t
                },
                "points outside the tree",
            ),
            (
                {
                    let mut t = Raw::new();
                    t.entry("l", tar::EntryType::Symlink, Some("."), b"");
                    // Writing through the link it planted.
                    t.file("l/x", b"x");
                    t
                },
                "is not a directory",
            ),
            (
                {
                    let mut t = Raw::new();
                    t.entry("h", tar::EntryType::Link, Some("etc/shadow"), b"");
                    t
                },
                "not part of what is extracted",
            ),
        ] {
            let bytes = build.bytes();
            let dir = tempfile::tempdir().unwrap();
            let err = extract(
                "evil.tar",
                &bytes[..],
                dir.path(),
                &Limits::TREE_TAR,
                &mut take_all,
            )
            .unwrap_err()
            .message;
            assert!(
                err.starts_with("evil.tar: ") && err.contains(needle),
                "{err}"
            );
        }
    }

    #[test]
    fn caps_stop_bombs_and_floods() {
        // 4 MiB of zeros compress to a few KiB: the stream cap stops it, not the raw cap.
        let mut t = Raw::new();
        t.file("big", &vec![0u8; 4 * MIB as usize]);
        let plain = t.bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let small = Limits {
            stream_bytes: MIB,
            ..Limits::TREE_TAR
        };
        let dir = tempfile::tempdir().unwrap();
        let err = extract("bomb.tar.gz", &gz[..], dir.path(), &small, &mut take_all)
            .unwrap_err()
            .message;
        assert!(err.contains("after decompression"), "{err}");
        let per_file = Limits {
            file_bytes: MIB,
            ..Limits::TREE_TAR
        };
        let err = extract("big.tar", &plain[..], dir.path(), &per_file, &mut take_all)
            .unwrap_err()
            .message;
        assert!(err.contains("at most 1 MiB per file"), "{err}");
        let mut t = Raw::new();
        for i in 0..20 {
            t.file(&format!("f{i}"), b"");
        }
        let few = Limits {
            entries: 10,
            ..Limits::TREE_TAR
        };
        let dir = tempfile::tempdir().unwrap();
        let err = extract("many.tar", &t.bytes()[..], dir.path(), &few, &mut take_all)
            .unwrap_err()
            .message;
        assert!(err.contains("more than 10 entries"), "{err}");
    }

    #[test]
    fn only_routed_entries_are_written_and_links_inside_are_kept() {
        let mut t = Raw::new();
        t.file("usr/bin/other", b"no").file("tree/a.h", b"a");
        t.entry("tree/b.h", tar::EntryType::Symlink, Some("a.h"), b"");
        t.entry("tree/c.h", tar::EntryType::Link, Some("tree/a.h"), b"");
        let dir = tempfile::tempdir().unwrap();
        let mut route = |p: &Path, _: &Kind| match p.strip_prefix("tree") {
            Ok(rel) => Route::Take(rel.to_path_buf()),
            Err(_) => Route::Skip,
        };
        extract(
            "t.tar",
            &t.bytes()[..],
            dir.path(),
            &Limits::TREE_TAR,
            &mut route,
        )
        .unwrap();
        assert!(!dir.path().join("usr").exists());
        assert_eq!(fs::read_to_string(dir.path().join("b.h")).unwrap(), "a");
        assert_eq!(fs::read_to_string(dir.path().join("c.h")).unwrap(), "a");
        assert!(
            fs::symlink_metadata(dir.path().join("b.h"))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn zstd_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let err = extract(
            "layer",
            &[0x28u8, 0xb5, 0x2f, 0xfd, 0, 0][..],
            dir.path(),
            &Limits::LAYER,
            &mut take_all,
        )
        .unwrap_err()
        .message;
        assert!(err.contains("zstd"), "{err}");
    }
}
