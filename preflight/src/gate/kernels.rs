//! The kernels a gate boots: Debian packages fetched with `apt-get download` and unpacked with
//! `dpkg -x` (never installed), a local `.deb`, or a kernel already on disk (a tree with
//! `boot/vmlinuz-<release>` and `lib/modules/<release>`, or a `vmlinuz-<release>` file whose
//! modules sit in the usual place beside it). Packages are cached across runs: old ABIs drop
//! out of Debian's index over time, so a kernel once fetched stays usable.
//!
//! A guest of another architecture than the host's (an arm64 kernel gated on an amd64 machine)
//! is fetched without multiarch apt (which would mean `dpkg --add-architecture`, a change to
//! the machine): Debian builds every architecture of a kernel ABI (and of busybox-static) from
//! the same source upload, so the host architecture's entry in apt's signed index gives the
//! version and pool path, and only the architecture in the file name differs
//! (`.../linux-signed-amd64/linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb` →
//! `.../linux-signed-arm64/linux-image-6.1.0-57-cloud-arm64_6.1.192-3_arm64.deb`). That file is
//! fetched over HTTPS only; apt's index has no hash for it, so its SHA-256 is printed for
//! whoever wants to compare it with Debian's arm64 `Packages`. A user who needs apt's signed
//! chain passes the `.deb` itself.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail, ensure};
use sha2::{Digest, Sha256};

use super::qemu::Machine;

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
/// or a Debian package of `machine`'s architecture: its name
/// (`linux-image-6.1.0-57-cloud-arm64`), an exact release (`6.1.0-56-cloud-amd64`) or a line
/// (`6.1`, `6.12`: the newest cloud kernel cached, else the newest the archive offers).
pub fn resolve(spec: &str, cache: &Path, machine: Machine) -> anyhow::Result<Kernel> {
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
    fetch(&package_for(spec, cache, machine)?, cache, machine)
}

/// Refuses a kernel image qemu cannot boot as `machine` before qemu runs (a wrong image
/// would only show as a guest that prints nothing). `head` is the file's first bytes (at
/// least 0x206 of them). arm64: the Image header's magic `ARM\x64` at 0x38
/// (Documentation/arch/arm64/booting.rst), which Debian's signed arm64 vmlinuz is (an
/// uncompressed Image with an EFI stub, 27 MB for 6.1); a gzip'd Image is fine too (qemu's arm
/// loader inflates it); an EFI zboot image (`zimg` at 4, CONFIG_EFI_ZBOOT) qemu's `-kernel`
/// loads only from 8.1 on. x86: the setup header's `HdrS` at 0x202
/// (Documentation/arch/x86/boot.rst).
pub fn image_problem(machine: Machine, head: &[u8]) -> Option<String> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    let arm64 = at(0x38, b"ARM\x64");
    let x86 = at(0x202, b"HdrS");
    let gzip = at(0, &[0x1f, 0x8b]);
    let zboot = at(0, b"MZ") && at(4, b"zimg");
    match machine {
        Machine::Aarch64 if arm64 || gzip => None,
        Machine::Aarch64 if zboot => Some(
            "an EFI zboot image (CONFIG_EFI_ZBOOT): give the uncompressed Image (arch/arm64/\
             boot/Image) or Image.gz; qemu before 8.1 cannot load zboot with -kernel"
                .into(),
        ),
        Machine::X86_64 if x86 => None,
        _ if x86 => Some("an x86 bzImage, not an arm64 kernel".into()),
        _ if arm64 => Some("an arm64 Image, not an x86 kernel".into()),
        Machine::Aarch64 => Some("not an arm64 Image (no ARM\\x64 magic at 0x38)".into()),
        Machine::X86_64 => Some("not an x86 bzImage (no HdrS at 0x202)".into()),
    }
}

/// [`image_problem`] on a kernel file, as an error naming it.
pub fn check_image(kernel: &Kernel, machine: Machine) -> anyhow::Result<()> {
    use std::io::Read;
    let path = kernel.vmlinuz();
    let mut head = Vec::with_capacity(0x210);
    fs::File::open(&path)
        .and_then(|f| f.take(0x210).read_to_end(&mut head))
        .with_context(|| format!("reading {}", path.display()))?;
    match image_problem(machine, &head) {
        None => Ok(()),
        Some(why) => bail!(
            "{}: {why} (the guests are {})",
            path.display(),
            machine.debian_arch()
        ),
    }
}

/// The Debian kernel package a name, release or line means for `machine`.
fn package_for(spec: &str, cache: &Path, machine: Machine) -> anyhow::Result<String> {
    let arch = machine.debian_arch();
    let host = Machine::host().debian_arch();
    if arch != host && spec.contains(&format!("-{host}")) {
        bail!("{spec}: a {host} kernel, but the guests are {arch} (--arch)");
    }
    if spec.starts_with("linux-image-") {
        return Ok(spec.to_string());
    }
    if spec.ends_with(&format!("-{arch}")) {
        return Ok(format!("linux-image-{spec}"));
    }
    ensure!(
        is_line(spec),
        "{spec}: not a .deb, a kernel directory, a vmlinuz-<release> file, a Debian package \
         (linux-image-...), a release (...-{arch}) or a kernel line (6.1, 6.12)"
    );
    if let Some(p) = newest(cached_packages(cache)?, spec, arch) {
        return Ok(p);
    }
    // apt's index knows the host's architecture only; the same ABI exists for the guest's.
    let package = newest(archive_packages(spec)?, spec, host).with_context(|| {
        format!(
            "no Debian cloud kernel package for {spec} (apt-cache pkgnames \
             linux-image-{spec}.); run apt-get update?"
        )
    })?;
    Ok(with_arch(&package, host, arch))
}

/// A package name or pool URL of one architecture as the other's: every `amd64` becomes
/// `arm64` (the flavour suffix, the signed source's directory, the `_amd64.deb` suffix).
fn with_arch(text: &str, from: &str, to: &str) -> String {
    if from == to {
        text.to_string()
    } else {
        text.replace(from, to)
    }
}

/// `6.1`, `6.12`: digits and one dot.
fn is_line(spec: &str) -> bool {
    let mut parts = spec.split('.');
    let ok =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// A local .deb, unpacked once into the cache under its content hash.
fn unpack_local_deb(deb: &Path, cache: &Path) -> anyhow::Result<Kernel> {
    let bytes = fs::read(deb).with_context(|| format!("reading {}", deb.display()))?;
    let hash = format!("{:x}", Sha256::digest(&bytes));
    let key = format!("deb-{}", &hash[..16]);
    let tree = unpack(deb, &cache.join("kernels"), &key)?;
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
fn fetch(package: &str, cache: &Path, machine: Machine) -> anyhow::Result<Kernel> {
    let tree = cache.join("kernels").join(package);
    if !tree.join(".complete").exists() {
        let deb = download(package, cache, machine)?;
        unpack(&deb, &cache.join("kernels"), package)?;
    }
    Kernel::from_tree(&tree, package)
}

/// The guest's busybox: the host's when the guest has the host's architecture (it must be
/// busybox-static: the guest has no shared libraries), else Debian's `busybox-static` of the
/// guest's architecture, fetched and unpacked into the cache.
pub fn guest_busybox(machine: Machine, cache: &Path) -> anyhow::Result<PathBuf> {
    if machine == Machine::host() {
        return host_busybox();
    }
    let key = format!("busybox-static-{}", machine.debian_arch());
    let tree = cache.join("tools").join(&key);
    if !tree.join(".complete").exists() {
        let deb = download("busybox-static", cache, machine)?;
        unpack(&deb, &cache.join("tools"), &key)?;
    }
    let busybox = tree.join("bin/busybox");
    ensure!(
        busybox.is_file(),
        "{}: busybox-static's .deb has no bin/busybox",
        tree.display()
    );
    Ok(busybox)
}

/// The host's static busybox (busybox-static), which also indexes the guest's modules.
pub fn host_busybox() -> anyhow::Result<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("no busybox (/bin/busybox): apt-get install busybox-static")
}

/// `package`'s .deb for `machine` in `<cache>/debs`, downloaded unless there.
fn download(package: &str, cache: &Path, machine: Machine) -> anyhow::Result<PathBuf> {
    let debs = cache.join("debs");
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    let arch = machine.debian_arch();
    if let Some(deb) = find_deb(&debs, package, arch)? {
        return Ok(deb);
    }
    if machine == Machine::host() {
        eprintln!("preflight: apt-get download {package}");
        let status = Command::new("apt-get")
            .current_dir(&debs)
            .args(["download", "-q", package])
            .status()
            .context("running apt-get download (a Debian host; else pass a .deb)")?;
        ensure!(status.success(), "apt-get download {package} failed");
    } else {
        download_foreign(package, &debs, machine)?;
    }
    find_deb(&debs, package, arch)?
        .with_context(|| format!("the download left no {package}_*_{arch}.deb"))
}

/// Another architecture's .deb, located through the host architecture's entry in apt's index
/// (module docs) and fetched over HTTPS with curl into `debs`.
fn download_foreign(package: &str, debs: &Path, machine: Machine) -> anyhow::Result<()> {
    let (host, arch) = (Machine::host().debian_arch(), machine.debian_arch());
    let host_package = with_arch(package, arch, host);
    let out = Command::new("apt-get")
        .args(["download", "--print-uris", "-q", &host_package])
        .output()
        .context("running apt-get download --print-uris (a Debian host; else pass a .deb)")?;
    ensure!(
        out.status.success(),
        "apt-get download --print-uris {host_package} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let (url, file) = foreign_uri(&String::from_utf8_lossy(&out.stdout), host, arch)
        .with_context(|| format!("apt-get printed no URI for {host_package}"))?;
    eprintln!("preflight: fetching {url}");
    let partial = debs.join(format!("{file}.partial"));
    let status = Command::new("curl")
        .args(["--fail", "--silent", "--show-error", "--location"])
        .args(["--proto", "=https", "--retry", "3", "--output"])
        .arg(&partial)
        .arg(&url)
        .status()
        .context("running curl (apt-get install curl)")?;
    if !status.success() {
        let _ = fs::remove_file(&partial);
        bail!("fetching {url} failed; download {package} for {arch} yourself and pass the .deb");
    }
    let bytes = fs::read(&partial).with_context(|| format!("reading {}", partial.display()))?;
    eprintln!(
        "preflight: {file}: sha256 {:x} (HTTPS; not in apt's {host} index)",
        Sha256::digest(&bytes)
    );
    fs::rename(&partial, debs.join(&file))?;
    Ok(())
}

/// From `apt-get download --print-uris` (`'URL' FILE SIZE SHA256:...`), the other
/// architecture's URL (over HTTPS) and file name.
fn foreign_uri(printed: &str, host: &str, arch: &str) -> Option<(String, String)> {
    let line = printed.lines().find(|l| l.starts_with('\''))?;
    let mut words = line.split_whitespace();
    let url = words.next()?.trim_matches('\'');
    let file = words.next()?;
    let url = with_arch(url, host, arch);
    let url = match url.strip_prefix("http://") {
        Some(rest) => format!("https://{rest}"),
        None => url,
    };
    // A file name comes from the archive: keep it a plain name in `debs`.
    let file = with_arch(file, host, arch);
    (!file.contains('/') && file.ends_with(".deb")).then_some((url, file))
}

/// `dpkg -x DEB` into `<dir>/<key>` unless done; returns the tree.
fn unpack(deb: &Path, dir: &Path, key: &str) -> anyhow::Result<PathBuf> {
    let tree = dir.join(key);
    if tree.join(".complete").exists() {
        return Ok(tree);
    }
    // Unpack beside the final place and rename, so a killed run never leaves a half tree
    // that looks complete.
    let partial = dir.join(format!("{key}.partial"));
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

/// `<package>_<version>_<arch>.deb` in `dir` (busybox-static has one name for every
/// architecture, so the suffix tells them apart).
fn find_deb(dir: &Path, package: &str, arch: &str) -> anyhow::Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    let suffix = format!("_{arch}.deb");
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(&suffix) {
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
    fn a_spec_names_the_package_of_the_guests_architecture() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path();
        let arm = |spec| package_for(spec, cache, Machine::Aarch64).unwrap();
        assert_eq!(
            arm("6.1.0-57-cloud-arm64"),
            "linux-image-6.1.0-57-cloud-arm64"
        );
        assert_eq!(
            arm("linux-image-6.1.0-57-arm64"),
            "linux-image-6.1.0-57-arm64"
        );
        // Another architecture's release or package for these guests: refused by name.
        let other = match Machine::host() {
            Machine::X86_64 => Machine::Aarch64,
            Machine::Aarch64 => Machine::X86_64,
        };
        let host = Machine::host().debian_arch();
        for spec in [
            format!("6.1.0-57-cloud-{host}"),
            format!("linux-image-6.1.0-57-cloud-{host}"),
        ] {
            let err = package_for(&spec, cache, other).unwrap_err().to_string();
            assert!(err.contains(&spec) && err.contains("--arch"), "{err}");
        }
        let err = package_for("6.1.0-57-cloud-ppc64el", cache, Machine::Aarch64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("(...-arm64)"), "{err}");
        // A line: the newest cached kernel of the guest's architecture, never the host's.
        for p in [
            "linux-image-6.1.0-57-cloud-amd64",
            "linux-image-6.1.0-56-cloud-arm64",
            "linux-image-6.1.0-9-cloud-arm64",
        ] {
            fs::create_dir_all(cache.join("kernels").join(p)).unwrap();
            fs::write(cache.join("kernels").join(p).join(".complete"), p).unwrap();
        }
        assert_eq!(arm("6.1"), "linux-image-6.1.0-56-cloud-arm64");
        assert_eq!(
            package_for("6.1", cache, Machine::X86_64).unwrap(),
            "linux-image-6.1.0-57-cloud-amd64"
        );
    }

    #[test]
    fn the_foreign_deb_is_the_host_entry_with_the_other_architecture_over_https() {
        let printed = "'http://deb.debian.org/debian-security/pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb' linux-image-6.1.0-57-cloud-amd64_6.1.192-3_amd64.deb 26705532 SHA256:4fdd\n";
        let (url, file) = foreign_uri(printed, "amd64", "arm64").unwrap();
        assert_eq!(
            url,
            "https://deb.debian.org/debian-security/pool/updates/main/l/linux-signed-arm64/linux-image-6.1.0-57-cloud-arm64_6.1.192-3_arm64.deb"
        );
        assert_eq!(file, "linux-image-6.1.0-57-cloud-arm64_6.1.192-3_arm64.deb");
        let busybox = "'http://deb.debian.org/debian/pool/main/b/busybox/busybox-static_1.35.0-4%2bdeb12u1%2bb1_amd64.deb' busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb 928188 SHA256:3d3f\n";
        let (url, file) = foreign_uri(busybox, "amd64", "arm64").unwrap();
        assert!(
            url.ends_with("busybox-static_1.35.0-4%2bdeb12u1%2bb1_arm64.deb"),
            "{url}"
        );
        assert!(file.ends_with("_arm64.deb"), "{file}");
        // Nothing printed (an unknown package), or a file name that is a path: no URI.
        assert_eq!(foreign_uri("", "amd64", "arm64"), None);
        assert_eq!(
            foreign_uri(
                "'https://x/a_amd64.deb' ../a_amd64.deb 1 SHA256:0\n",
                "amd64",
                "arm64"
            ),
            None
        );
        assert_eq!(
            with_arch("linux-image-6.12.118+deb12-cloud-arm64", "arm64", "amd64"),
            "linux-image-6.12.118+deb12-cloud-amd64"
        );
    }

    #[test]
    fn a_kernel_image_of_the_wrong_kind_is_refused_before_qemu() {
        let mut arm64 = vec![0u8; 0x210];
        arm64[..2].copy_from_slice(b"MZ");
        arm64[0x38..0x3c].copy_from_slice(b"ARM\x64");
        let mut bzimage = vec![0u8; 0x210];
        bzimage[0x202..0x206].copy_from_slice(b"HdrS");
        let gzip = [0x1f, 0x8b, 8, 0];
        let mut zboot = vec![0u8; 0x210];
        zboot[..2].copy_from_slice(b"MZ");
        zboot[4..8].copy_from_slice(b"zimg");
        assert_eq!(image_problem(Machine::Aarch64, &arm64), None);
        assert_eq!(image_problem(Machine::Aarch64, &gzip), None);
        assert_eq!(image_problem(Machine::X86_64, &bzimage), None);
        let why = |m, head: &[u8]| image_problem(m, head).unwrap();
        assert!(why(Machine::Aarch64, &bzimage).contains("x86 bzImage"));
        assert!(why(Machine::X86_64, &arm64).contains("arm64 Image"));
        assert!(why(Machine::Aarch64, &zboot).contains("zboot"));
        assert!(why(Machine::X86_64, b"short").contains("not an x86"));
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
        let tree = resolve(root.to_str().unwrap(), root, Machine::host()).unwrap();
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
        let k = resolve(file.to_str().unwrap(), root, Machine::host()).unwrap();
        assert_eq!(k.release, "6.1.0-9-cloud-amd64");
        assert!(k.modules_dir().is_some() && k.config().is_some());
        // A second kernel in the tree: ambiguous, the file must be named.
        fs::write(root.join("boot/vmlinuz-6.12.1"), b"k").unwrap();
        let err = resolve(root.to_str().unwrap(), root, Machine::host())
            .unwrap_err()
            .to_string();
        assert!(err.contains("several kernels"), "{err}");
    }

    #[test]
    fn a_spec_that_is_nothing_known_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["./no/such/vmlinuz", "banana"] {
            let err = resolve(bad, dir.path(), Machine::host())
                .unwrap_err()
                .to_string();
            assert!(err.contains(bad), "{err}");
        }
        assert!(is_line("6.12") && is_line("6.1") && !is_line("6") && !is_line("6.1.0"));
        let err = Kernel::from_vmlinuz(Path::new("/etc/hostname"), "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("vmlinuz-<release>"), "{err}");
    }
}
