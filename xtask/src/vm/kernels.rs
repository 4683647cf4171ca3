//! Real Debian kernels, fetched with `apt-get download` and unpacked with `dpkg -x`, never
//! installed. Cached across runs: old ABIs drop out of the archive's index over time, so a kernel
//! once fetched stays usable (see ../shared/ENVIRONMENT.md).
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail, ensure};

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `uname -r` inside the guest, e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    /// The Debian package it came from.
    pub package: String,
    /// The `dpkg -x` tree (boot/, lib/modules/<release>/).
    pub tree: PathBuf,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.tree.join(format!("boot/vmlinuz-{}", self.release))
    }
    pub fn config(&self) -> PathBuf {
        self.tree.join(format!("boot/config-{}", self.release))
    }
    pub fn modules_dir(&self) -> PathBuf {
        self.tree.join(format!("lib/modules/{}", self.release))
    }
    /// `major.minor`, for expectations that depend on the kernel line.
    pub fn series(&self) -> (u32, u32) {
        let mut parts = self
            .release
            .split(['.', '-'])
            .map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }
    /// `CONFIG_NAME` from the package's config: `y`, `m`, or None when not set.
    pub fn config_value(&self, name: &str) -> anyhow::Result<Option<String>> {
        let path = self.config();
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let prefix = format!("{name}=");
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_string()))
    }
}

/// The cache: `$PREFLIGHT_VM_CACHE`, else `$XDG_CACHE_HOME/preflight-vm`, else
/// `~/.cache/preflight-vm`. Outside target/ so that `cargo clean` keeps the downloads.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PREFLIGHT_VM_CACHE") {
        return dir.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("preflight-vm")
}

/// A `--kernel` value: a line (`6.1`, `6.12`: the newest cached, else the newest the archive
/// offers) or an exact release (`6.1.0-56-cloud-amd64`, `6.12.117+deb12-cloud-amd64`).
pub fn resolve(spec: &str, cache: &Path) -> anyhow::Result<Kernel> {
    let exact = spec.ends_with("-amd64");
    let package = if exact {
        format!("linux-image-{spec}")
    } else {
        match newest(cached_packages(cache)?, spec) {
            Some(p) => p,
            None => newest(archive_packages(spec)?, spec).with_context(|| {
                format!(
                    "no Debian cloud kernel package for {spec} (apt-cache pkgnames \
                     linux-image-{spec}.); run apt-get update?"
                )
            })?,
        }
    };
    fetch(&package, cache)
}

/// Picks the newest cloud kernel package of a line, by numeric version order.
fn newest(packages: Vec<String>, series: &str) -> Option<String> {
    let prefix = format!("linux-image-{series}.");
    packages
        .into_iter()
        .filter(|p| p.starts_with(&prefix) && p.ends_with("-cloud-amd64"))
        .max_by_key(|p| version_key(p))
}

fn version_key(package: &str) -> Vec<u64> {
    package
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

fn cached_packages(cache: &Path) -> anyhow::Result<Vec<String>> {
    let dir = cache.join("kernels");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.path().join(".complete").exists() {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(out)
}

fn archive_packages(series: &str) -> anyhow::Result<Vec<String>> {
    let out = Command::new("apt-cache")
        .args(["pkgnames", &format!("linux-image-{series}.")])
        .output()
        .context("running apt-cache pkgnames")?;
    ensure!(out.status.success(), "apt-cache pkgnames failed");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Downloads and unpacks `package` unless the cache has it; returns the unpacked kernel.
fn fetch(package: &str, cache: &Path) -> anyhow::Result<Kernel> {
    let tree = cache.join("kernels").join(package);
    if !tree.join(".complete").exists() {
        let debs = cache.join("debs");
        fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
        let deb = find_deb(&debs, package)?;
        let deb = match deb {
            Some(deb) => deb,
            None => {
                println!("vm-test: apt-get download {package}");
                let status = Command::new("apt-get")
                    .current_dir(&debs)
                    .args(["download", "-q", package])
                    .status()
                    .context("running apt-get download")?;
                ensure!(status.success(), "apt-get download {package} failed");
                find_deb(&debs, package)?
                    .with_context(|| format!("apt-get download left no {package}_*.deb"))?
            }
        };
        // Unpack beside the final place and rename, so a killed run never leaves a half tree
        // that looks complete.
        let partial = cache.join("kernels").join(format!("{package}.partial"));
        let _ = fs::remove_dir_all(&partial);
        fs::create_dir_all(&partial)?;
        let status = Command::new("dpkg")
            .arg("-x")
            .arg(&deb)
            .arg(&partial)
            .status()
            .context("running dpkg -x")?;
        ensure!(status.success(), "dpkg -x {} failed", deb.display());
        fs::write(partial.join(".complete"), package)?;
        let _ = fs::remove_dir_all(&tree);
        fs::rename(&partial, &tree)?;
    }
    let release = release_of(&tree)?;
    Ok(Kernel {
        release,
        package: package.to_string(),
        tree,
    })
}

fn find_deb(dir: &Path, package: &str) -> anyhow::Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(Some(dir.join(name)));
        }
    }
    Ok(None)
}

/// The release is the one directory under lib/modules/.
fn release_of(tree: &Path) -> anyhow::Result<String> {
    let modules = tree.join("lib/modules");
    let mut releases: Vec<_> = fs::read_dir(&modules)
        .with_context(|| format!("reading {}", modules.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if releases.len() != 1 {
        bail!(
            "{}: expected one kernel release, found {releases:?}",
            modules.display()
        );
    }
    Ok(releases.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_package_of_a_line_is_picked_numerically() {
        let names = [
            "linux-image-6.1.0-9-cloud-amd64",
            "linux-image-6.1.0-56-cloud-amd64",
            "linux-image-6.1.0-56-cloud-amd64-dbg",
            "linux-image-6.12.117+deb12-cloud-amd64",
            "linux-image-6.12.99+deb12-cloud-amd64",
            "linux-image-6.12-cloud-amd64",
            "linux-image-6.1.0-60-amd64",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            newest(names.clone(), "6.1").as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(
            newest(names.clone(), "6.12").as_deref(),
            Some("linux-image-6.12.117+deb12-cloud-amd64")
        );
        assert_eq!(newest(names, "5.10"), None);
    }

    #[test]
    fn series_comes_from_the_release() {
        let k = |release: &str| Kernel {
            release: release.into(),
            package: String::new(),
            tree: PathBuf::new(),
        };
        assert_eq!(k("6.1.0-56-cloud-amd64").series(), (6, 1));
        assert_eq!(k("6.12.117+deb12-cloud-amd64").series(), (6, 12));
    }
}
