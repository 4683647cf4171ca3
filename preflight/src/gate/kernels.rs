//! The kernels a gate boots: Debian packages fetched with `apt-get download` and unpacked with
//! `dpkg -x` (never installed), a local `.deb`, or a kernel already on disk (a tree with
//! `boot/vmlinuz-<release>` and `lib/modules/<release>`, or a `vmlinuz-<release>` file whose
//! modules sit in the usual place beside it). Packages are cached across runs: old ABIs drop
//! out of Debian's index over time, so a kernel once fetched stays usable.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail, ensure};
use sha2::{Digest, Sha256};

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `uname -r` inside the guest, e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    /// Where it came from: the Debian package, the .deb file or the path given.
    pub package: String,
    /// The unpacked tree (`boot/`, `lib/modules/<release>/`), or the root the files were found in.
    pub tree: PathBuf,
    vmlinuz: PathBuf,
    config: Option<PathBuf>,
    modules: Option<PathBuf>,
}

impl Kernel {
    /// A kernel known by its release alone, without files (expectation tests).
    pub fn named(release: &str) -> Self {
        Self {
            release: release.to_string(),
            package: String::new(),
            tree: PathBuf::new(),
            vmlinuz: PathBuf::new(),
            config: None,
            modules: None,
        }
    }
    pub fn vmlinuz(&self) -> PathBuf {
        self.vmlinuz.clone()
    }
    /// `boot/config-<release>`, when the kernel came with one (Debian's do).
    pub fn config(&self) -> Option<PathBuf> {
        self.config.clone()
    }
    /// `lib/modules/<release>`, when the kernel has modules.
    pub fn modules_dir(&self) -> Option<PathBuf> {
        self.modules.clone()
    }
    /// `major.minor`, for expectations that depend on the kernel line.
    pub fn series(&self) -> (u32, u32) {
        let mut parts = self
            .release
            .split(['.', '-'])
            .map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }
    /// `CONFIG_NAME` from the kernel's config: `y`, `m`, or None when not set (or no config).
    pub fn config_value(&self, name: &str) -> anyhow::Result<Option<String>> {
        let Some(path) = &self.config else {
            return Ok(None);
        };
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let prefix = format!("{name}=");
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_string()))
    }

    /// The kernel in an unpacked tree: `boot/vmlinuz-<release>` and `lib/modules/<release>`
    /// (or `usr/lib/modules/<release>`), `boot/config-<release>` when present.
    pub fn from_tree(tree: &Path, package: &str) -> anyhow::Result<Self> {
        let boot = tree.join("boot");
        let mut releases: Vec<String> = fs::read_dir(&boot)
            .with_context(|| {
                format!(
                    "{}: no boot/ directory with a vmlinuz-<release>",
                    tree.display()
                )
            })?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_prefix("vmlinuz-")
                    .map(str::to_string)
            })
            .collect();
        releases.sort();
        let release = match releases.as_slice() {
            [one] => one.clone(),
            [] => bail!("{}: no boot/vmlinuz-<release>", boot.display()),
            many => bail!(
                "{}: several kernels ({}); give one boot/vmlinuz-<release> file instead",
                boot.display(),
                many.join(", ")
            ),
        };
        Self::from_vmlinuz(&boot.join(format!("vmlinuz-{release}")), package)
    }

    /// A `vmlinuz-<release>` file; its modules and config are looked for where a Debian
    /// system or `make install`/`modules_install` put them: `<dir>/config-<release>`,
    /// `<dir>/../lib/modules/<release>`, `<dir>/../usr/lib/modules/<release>`.
    pub fn from_vmlinuz(vmlinuz: &Path, package: &str) -> anyhow::Result<Self> {
        let name = vmlinuz
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(release) = name.strip_prefix("vmlinuz-").filter(|r| !r.is_empty()) else {
            bail!(
                "{}: expected a file named vmlinuz-<release> (the release is how the guest's \
                 modules are found)",
                vmlinuz.display()
            );
        };
        ensure!(vmlinuz.is_file(), "{}: no such file", vmlinuz.display());
        let dir = vmlinuz.parent().unwrap_or(Path::new("."));
        let root = dir.join("..");
        let config = Some(dir.join(format!("config-{release}"))).filter(|p| p.is_file());
        let modules = [
            root.join("lib/modules").join(release),
            root.join("usr/lib/modules").join(release),
        ]
        .into_iter()
        .find(|p| p.is_dir());
        Ok(Self {
            release: release.to_string(),
            package: package.to_string(),
            tree: root,
            vmlinuz: vmlinuz.to_path_buf(),
            config,
            modules,
        })
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

/// A `--kernel` value: a `.deb` file, a kernel tree directory, a `vmlinuz-<release>` file,
/// or a Debian package: its name (`linux-image-6.1.0-57-cloud-amd64`), an exact release
/// (`6.1.0-56-cloud-amd64`) or a line (`6.1`, `6.12`: the newest cloud kernel cached, else the
/// newest the archive offers).
pub fn resolve(spec: &str, cache: &Path) -> anyhow::Result<Kernel> {
    let path = Path::new(spec);
    if spec.ends_with(".deb") {
        return unpack_local_deb(path, cache);
    }
    if path.is_dir() {
        return Kernel::from_tree(path, spec);
    }
    if path.is_file() {
        return Kernel::from_vmlinuz(path, spec);
    }
    if spec.contains('/') {
        bail!("{spec}: no such file or directory");
    }
    let arch = debian_arch();
    let package = if let Some(name) = spec.strip_prefix("linux-image-") {
        format!("linux-image-{name}")
    } else if spec.ends_with(&format!("-{arch}")) {
        format!("linux-image-{spec}")
    } else if is_line(spec) {
        match newest(cached_packages(cache)?, spec, &arch) {
            Some(p) => p,
            None => newest(archive_packages(spec)?, spec, &arch).with_context(|| {
                format!(
                    "no Debian cloud kernel package for {spec} (apt-cache pkgnames \
                     linux-image-{spec}.); run apt-get update?"
                )
            })?,
        }
    } else {
        bail!(
            "{spec}: not a .deb, a kernel directory, a vmlinuz-<release> file, a Debian package \
             (linux-image-...), a release (...-{arch}) or a kernel line (6.1, 6.12)"
        );
    };
    fetch(&package, cache)
}

/// `6.1`, `6.12`: digits and one dot.
fn is_line(spec: &str) -> bool {
    let mut parts = spec.split('.');
    let ok =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// This machine's Debian architecture name (`amd64`, `arm64`): the flavour suffix of its
/// kernel packages.
fn debian_arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

/// A local .deb, unpacked once into the cache under its content hash.
fn unpack_local_deb(deb: &Path, cache: &Path) -> anyhow::Result<Kernel> {
    let bytes = fs::read(deb).with_context(|| format!("reading {}", deb.display()))?;
    let hash = format!("{:x}", Sha256::digest(&bytes));
    let key = format!("deb-{}", &hash[..16]);
    let tree = unpack(deb, cache, &key)?;
    Kernel::from_tree(&tree, &deb.display().to_string())
}

/// Picks the newest cloud kernel package of a line, by numeric version order.
fn newest(packages: Vec<String>, series: &str, arch: &str) -> Option<String> {
    let prefix = format!("linux-image-{series}.");
    let suffix = format!("-cloud-{arch}");
    packages
        .into_iter()
        .filter(|p| p.starts_with(&prefix) && p.ends_with(&suffix))
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
        let deb = match find_deb(&debs, package)? {
            Some(deb) => deb,
            None => {
                eprintln!("preflight: apt-get download {package}");
                let status = Command::new("apt-get")
                    .current_dir(&debs)
                    .args(["download", "-q", package])
                    .status()
                    .context("running apt-get download (a Debian host; else pass a .deb)")?;
                ensure!(status.success(), "apt-get download {package} failed");
                find_deb(&debs, package)?
                    .with_context(|| format!("apt-get download left no {package}_*.deb"))?
            }
        };
        unpack(&deb, cache, package)?;
    }
    Kernel::from_tree(&tree, package)
}

/// `dpkg -x DEB` into `<cache>/kernels/<key>` unless done; returns the tree.
fn unpack(deb: &Path, cache: &Path, key: &str) -> anyhow::Result<PathBuf> {
    let tree = cache.join("kernels").join(key);
    if tree.join(".complete").exists() {
        return Ok(tree);
    }
    // Unpack beside the final place and rename, so a killed run never leaves a half tree
    // that looks complete.
    let partial = cache.join("kernels").join(format!("{key}.partial"));
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let status = Command::new("dpkg")
        .arg("-x")
        .arg(deb)
        .arg(&partial)
        .status()
        .context("running dpkg -x")?;
    ensure!(status.success(), "dpkg -x {} failed", deb.display());
    fs::write(partial.join(".complete"), key)?;
    let _ = fs::remove_dir_all(&tree);
    fs::rename(&partial, &tree)?;
    Ok(tree)
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
            newest(names.clone(), "6.1", "amd64").as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(
            newest(names.clone(), "6.12", "amd64").as_deref(),
            Some("linux-image-6.12.117+deb12-cloud-amd64")
        );
        assert_eq!(newest(names.clone(), "5.10", "amd64"), None);
        assert_eq!(newest(names, "6.1", "arm64"), None);
    }

    #[test]
    fn series_comes_from_the_release() {
        let k = Kernel::named;
        assert_eq!(k("6.1.0-56-cloud-amd64").series(), (6, 1));
        assert_eq!(k("6.12.117+deb12-cloud-amd64").series(), (6, 12));
    }

    #[test]
    fn a_kernel_tree_and_a_vmlinuz_file_find_their_modules_and_config() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("boot")).unwrap();
        fs::create_dir_all(root.join("lib/modules/6.1.0-9-cloud-amd64/kernel")).unwrap();
        fs::write(root.join("boot/vmlinuz-6.1.0-9-cloud-amd64"), b"k").unwrap();
        fs::write(
            root.join("boot/config-6.1.0-9-cloud-amd64"),
            b"CONFIG_NETKIT=y\n",
        )
        .unwrap();
        let tree = resolve(root.to_str().unwrap(), root).unwrap();
        assert_eq!(tree.release, "6.1.0-9-cloud-amd64");
        assert!(
            tree.modules_dir()
                .unwrap()
                .ends_with("lib/modules/6.1.0-9-cloud-amd64")
        );
        assert_eq!(
            tree.config_value("CONFIG_NETKIT").unwrap().as_deref(),
            Some("y")
        );
        let file = root.join("boot/vmlinuz-6.1.0-9-cloud-amd64");
        let k = resolve(file.to_str().unwrap(), root).unwrap();
        assert_eq!(k.release, "6.1.0-9-cloud-amd64");
        assert!(k.modules_dir().is_some() && k.config().is_some());
        // A second kernel in the tree: ambiguous, the file must be named.
        fs::write(root.join("boot/vmlinuz-6.12.1"), b"k").unwrap();
        let err = resolve(root.to_str().unwrap(), root)
            .unwrap_err()
            .to_string();
        assert!(err.contains("several kernels"), "{err}");
    }

    #[test]
    fn a_spec_that_is_nothing_known_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["./no/such/vmlinuz", "banana"] {
            let err = resolve(bad, dir.path()).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        assert!(is_line("6.12") && is_line("6.1") && !is_line("6") && !is_line("6.1.0"));
        let err = Kernel::from_vmlinuz(Path::new("/etc/hostname"), "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("vmlinuz-<release>"), "{err}");
    }
}
