//! Where the bpf tree comes from, against real things: Debian's `docker-registry` (the CNCF
//! distribution registry 2.8) started here on 127.0.0.1 with a scratch storage dir, images this
//! test builds as OCI layouts from ../shared's unmodified Cilium tree and pushes with `skopeo`,
//! `docker-archive:` and `oci-archive:` files skopeo writes, and `preflight compile` / `run`
//! on the trees they give.
//!
//! No mock: the registry's own token challenge (its `silly` access controller answers every
//! request without an Authorization header with `WWW-Authenticate: Bearer realm=…`) sends the
//! client to a token endpoint this test serves; the registry's access log says which blobs were
//! downloaded. Without the packages or ../shared each test is reported as ignored, with the
//! reason; under CI (CI=true, where scripts/setup.sh installed them) it fails instead.
mod common;

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use preflight::compile::source::{self, Request, TreeOrigin};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The smallest of the shared trees.
const VERSION: &str = "1.16.15";

type Test = fn() -> Result<(), Failed>;

/// What a test needs beyond the build.
#[derive(Clone, Copy, PartialEq)]
enum Needs {
    /// ../shared's tree.
    Shared,
    /// ../shared, docker-registry and skopeo.
    Registry,
    /// ../shared and root (a live `run`).
    SharedRoot,
}

fn main() {
    let args = Arguments::from_args();
    let tests: &[(&str, Needs, Test)] = &[
        (
            "pull_takes_only_the_bpf_dir_from_the_layers_that_hold_it",
            Needs::Registry,
            pull_takes_only_the_bpf_dir_from_the_layers_that_hold_it,
        ),
        (
            "a_pulled_image_works_offline_by_tag_and_by_digest",
            Needs::Registry,
            a_pulled_image_works_offline_by_tag_and_by_digest,
        ),
        (
            "the_images_clang_is_used_when_it_runs_here_and_why_not_when_not",
            Needs::Registry,
            the_images_clang_is_used_when_it_runs_here_and_why_not_when_not,
        ),
        (
            "a_layer_that_does_not_match_its_digest_is_refused_and_nothing_is_cached",
            Needs::Registry,
            a_layer_that_does_not_match_its_digest_is_refused_and_nothing_is_cached,
        ),
        (
            "the_registrys_bearer_token_challenge_is_followed",
            Needs::Registry,
            the_registrys_bearer_token_challenge_is_followed,
        ),
        (
            "docker_and_oci_archives_and_oci_layouts_give_the_same_tree",
            Needs::Registry,
            docker_and_oci_archives_and_oci_layouts_give_the_same_tree,
        ),
        (
            "tampered_archives_are_refused",
            Needs::Registry,
            tampered_archives_are_refused,
        ),
        (
            "compile_judges_a_bpf_tar_and_refuses_hostile_ones",
            Needs::Shared,
            compile_judges_a_bpf_tar_and_refuses_hostile_ones,
        ),
        (
            "run_judges_the_tree_it_is_given",
            Needs::SharedRoot,
            run_judges_the_tree_it_is_given,
        ),
    ];
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let trials = tests
        .iter()
        .map(|&(name, needs, test)| {
            Trial::ignorable_test(name, move || {
                // Test data outside the repository may be absent anywhere, CI included: then the
                // test is ignored with the reason. What setup.sh installs (the registry, skopeo)
                // and root must be there in CI.
                if shared_tar().is_none() {
                    return Ok(Completion::ignored_with(format!(
                        "needs ../shared/cilium/{VERSION}/bpf.tar.gz (or PREFLIGHT_SHARED)"
                    )));
                }
                match (missing(needs), ci) {
                    (Some(why), false) => Ok(Completion::ignored_with(why)),
                    (Some(why), true) => Err(format!("CI must run this test, but it {why}").into()),
                    (None, _) => test().map(|()| Completion::Completed),
                }
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn shared_tar() -> Option<PathBuf> {
    let base = std::env::var_os("PREFLIGHT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let p = base.join("cilium").join(VERSION).join("bpf.tar.gz");
    p.is_file().then_some(p)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Why a test cannot run here, or None.
fn missing(needs: Needs) -> Option<String> {
    let mut gaps = Vec::new();
    if shared_tar().is_none() {
        gaps.push(format!(
            "../shared/cilium/{VERSION}/bpf.tar.gz (or PREFLIGHT_SHARED)"
        ));
    }
    if needs == Needs::Registry {
        for tool in ["docker-registry", "skopeo"] {
            if !on_path(tool) {
                gaps.push(format!("{tool} (Debian package; scripts/setup.sh)"));
            }
        }
    }
    if needs == Needs::SharedRoot && !common::is_root() {
        gaps.push("root (a live run: bpf(), the verifier)".into());
    }
    (!gaps.is_empty()).then(|| format!("needs {}", gaps.join(", ")))
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what().into()) }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

fn other_arch() -> &'static str {
    if host_arch() == "amd64" {
        "arm64"
    } else {
        "amd64"
    }
}

// ---------------------------------------------------------------------------------------------
// Building images

/// One file or dir of a layer.
enum Item {
    File(String, Vec<u8>, u32),
    Dir(String),
}

/// A layer: (gzip blob, diff id).
fn layer(items: &[Item]) -> (Vec<u8>, String) {
    let mut b = tar::Builder::new(Vec::new());
    for item in items {
        let mut h = tar::Header::new_ustar();
        match item {
            Item::File(path, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_mode(*mode);
                h.set_cksum();
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            Item::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                h.set_cksum();
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
        }
    }
    let plain = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    (gz.finish().unwrap(), sha256(&plain))
}

/// The shared tree's files as they sit in the image: `var/lib/cilium/bpf/…`.
fn bpf_items() -> Vec<Item> {
    let file = std::fs::File::open(shared_tar().unwrap()).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut items = vec![
        Item::Dir("var/".into()),
        Item::Dir("var/lib/".into()),
        Item::Dir("var/lib/cilium/".into()),
    ];
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let path = format!("var/lib/cilium/{path}");
        match e.header().entry_type() {
            tar::EntryType::Directory => items.push(Item::Dir(path)),
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                items.push(Item::File(path, data, 0o644));
            }
            other => panic!("unexpected {other:?} in the shared tree"),
        }
    }
    items
}

/// The shared tree's regular files: relative path → content.
fn shared_files() -> std::collections::BTreeMap<String, Vec<u8>> {
    let file = std::fs::File::open(shared_tar().unwrap()).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = std::collections::BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type() == tar::EntryType::Regular {
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.insert(path.trim_start_matches("bpf/").to_string(), data);
        }
    }
    out
}

fn files_under(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// Which clang the image carries at /usr/local/bin.
#[derive(Clone, Copy, PartialEq)]
enum Clang {
    None,
    /// Debian's clang-19 and llc-19 binaries (dynamically linked to libraries this machine has).
    Runs,
    /// An ELF header for another CPU.
    Foreign,
}

/// An OCI layout holding an index of two platforms; the host's manifest has four layers:
/// 0 base (toolchain, other files), 1 "envoy", 2 the install layer (the bpf dir, a binary, a
/// sibling file), 3 a workdir.
struct Image {
    layout: tempfile::TempDir,
    tag: String,
    index_digest: String,
    manifest_digest: String,
    config_digest: String,
    /// The host manifest's layers, bottom first.
    layers: Vec<String>,
    other_platform_blobs: Vec<String>,
}

fn put_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let digest = sha256(bytes);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&digest[7..]), bytes).unwrap();
    (digest, bytes.len())
}

fn put_manifest(
    layout: &Path,
    arch: &str,
    layers: &[(Vec<u8>, String)],
) -> (Value, String, Vec<String>) {
    let config = json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/usr/bin/cilium-agent"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>()},
    });
    let (config_digest, config_size) = put_blob(layout, config.to_string().as_bytes());
    let mut descs = Vec::new();
    let mut digests = Vec::new();
    for (blob, _) in layers {
        let (d, size) = put_blob(layout, blob);
        digests.push(d.clone());
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": size}));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": descs,
    });
    let (digest, size) = put_blob(layout, manifest.to_string().as_bytes());
    (
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
               "platform": {"architecture": arch, "os": "linux"}}),
        config_digest,
        digests,
    )
}

fn build_image(tag: &str, clang: Clang) -> Image {
    let layout = tempfile::tempdir().unwrap();
    let l = layout.path();
    std::fs::write(l.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut base = vec![
        Item::Dir("etc/".into()),
        Item::File("etc/os-release".into(), b"ID=ubuntu\n".to_vec(), 0o644),
        Item::Dir("usr/".into()),
        Item::Dir("usr/local/".into()),
        Item::Dir("usr/local/bin/".into()),
        Item::File(
            "usr/local/bin/bpftool".into(),
            b"not extracted".to_vec(),
            0o755,
        ),
    ];
    match clang {
        Clang::None => {}
        Clang::Runs => {
            for (name, path) in [
                ("clang", "/usr/lib/llvm-19/bin/clang"),
                ("llc", "/usr/lib/llvm-19/bin/llc"),
            ] {
                base.push(Item::File(
                    format!("usr/local/bin/{name}"),
                    std::fs::read(path).unwrap(),
                    0o755,
                ));
            }
        }
        Clang::Foreign => {
            let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
            let mut header = me[..64].to_vec();
            let machine: u16 = if host_arch() == "amd64" { 183 } else { 62 };
            header[18..20].copy_from_slice(&machine.to_le_bytes());
            base.push(Item::File(
                "usr/local/bin/clang".into(),
                header.clone(),
                0o755,
            ));
            base.push(Item::File("usr/local/bin/llc".into(), header, 0o755));
        }
    }
    let envoy = vec![
        Item::Dir("usr/".into()),
        Item::Dir("usr/bin/".into()),
        Item::File("usr/bin/cilium-envoy".into(), vec![7u8; 256 * 1024], 0o755),
    ];
    let mut install = bpf_items();
    install.push(Item::File(
        "var/lib/cilium/other.txt".into(),
        b"sibling".to_vec(),
        0o644,
    ));
    install.push(Item::Dir("usr/".into()));
    install.push(Item::Dir("usr/bin/".into()));
    install.push(Item::File(
        "usr/bin/cilium-agent".into(),
        vec![1u8; 64 * 1024],
        0o755,
    ));
    let workdir = vec![Item::Dir("home/".into()), Item::Dir("home/cilium/".into())];
    let host_layers = [
        layer(&base),
        layer(&envoy),
        layer(&install),
        layer(&workdir),
    ];
    let (host_desc, config_digest, layers) = put_manifest(l, host_arch(), &host_layers);
    let other_layers = [layer(&[Item::File(
        "var/lib/cilium/bpf/bpf_lxc.c".into(),
        b"/* the other platform's */".to_vec(),
        0o644,
    )])];
    let (other_desc, _, other_platform_blobs) = put_manifest(l, other_arch(), &other_layers);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [other_desc, host_desc.clone()],
    });
    let (index_digest, index_size) = put_blob(l, index.to_string().as_bytes());
    let top = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest,
                       "size": index_size, "annotations": {"org.opencontainers.image.ref.name": tag}}],
    });
    std::fs::write(l.join("index.json"), top.to_string()).unwrap();
    Image {
        layout,
        tag: tag.to_string(),
        index_digest,
        manifest_digest: host_desc["digest"].as_str().unwrap().to_string(),
        config_digest,
        layers,
        other_platform_blobs,
    }
}

fn skopeo(args: &[&str]) -> Result<(), Failed> {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("skopeo: {e}"))?;
    check(out.status.success(), || {
        format!(
            "skopeo {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn push(image: &Image, host: &str) -> Result<String, Failed> {
    let reference = format!("{host}/cilium/cilium:{}", image.tag);
    skopeo(&[
        "copy",
        "--quiet",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:{}", image.layout.path().display(), image.tag),
        &format!("docker://{reference}"),
    ])?;
    Ok(reference)
}

// ---------------------------------------------------------------------------------------------
// The registry and a token endpoint

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `docker-registry serve` on 127.0.0.1 with its own storage; killed when dropped (and by
/// the kernel if this test process dies first: PR_SET_PDEATHSIG).
struct Registry {
    child: Option<Child>,
    host: String,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start(auth: Option<(&str, &str)>) -> Result<Self, Failed> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        );
        if let Some((realm, service)) = auth {
            config.push_str(&format!(
                "auth:\n  silly:\n    realm: {realm}\n    service: {service}\n"
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("docker-registry: {e}"))?;
        let mut reg = Registry {
            child: Some(child),
            host: format!("127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(200 | 401) = http_status(&reg.host, "/v2/") {
                return Ok(reg);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        reg.stop();
        Err(format!(
            "docker-registry did not answer on {}: {}",
            reg.host,
            reg.log()
        )
        .into())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Digests of the blobs served with GET (the access log).
    fn blobs_fetched(&self) -> BTreeSet<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET ") && l.contains("/blobs/sha256:"))
            .filter_map(|l| {
                let at = l.find("/blobs/")? + "/blobs/".len();
                Some(l[at..at + 71].to_string())
            })
            .collect()
    }

    fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn http_status(host: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A token endpoint: answers every request with a bearer token and records the request lines.
struct TokenServer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, halt) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = vec![0u8; 8192];
                let n = conn.read(&mut buf).unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(line) = text.lines().next() {
                    reqs.lock().unwrap().push(line.to_string());
                }
                let body = r#"{"token":"preflight-test-token","access_token":"preflight-test-token","expires_in":300}"#;
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Helpers over the library and the binary

fn pull(reference: &str, cache: &Path, clang_from_image: bool) -> Result<source::Resolved, String> {
    source::resolve(&Request {
        image: Some(reference.to_string()),
        cache_dir: Some(cache.to_path_buf()),
        clang_from_image,
        ..Request::default()
    })
}

fn from_archive(
    path: &Path,
    cache: &Path,
    clang_from_image: bool,
) -> Result<source::Resolved, String> {
    source::resolve(&Request {
        image_archive: Some(path.to_path_buf()),
        cache_dir: Some(cache.to_path_buf()),
        clang_from_image,
        ..Request::default()
    })
}

/// (digest, from, note) of an image origin.
fn image_origin(r: &source::Resolved) -> Result<(String, String, Option<String>, String), Failed> {
    match &r.origin {
        TreeOrigin::Image {
            digest,
            from,
            note,
            platform,
            ..
        } => Ok((digest.clone(), from.clone(), note.clone(), platform.clone())),
        other => Err(format!("not an image origin: {other:?}").into()),
    }
}

/// The tree taken is the shared tree, file for file, and nothing else.
fn same_tree(r: &source::Resolved) -> Result<(), Failed> {
    let got = files_under(r.bpf_dir.as_ref().ok_or("no bpf dir")?);
    let want = shared_files();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let lacking: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    check(extra.is_empty() && lacking.is_empty(), || {
        format!("extra {extra:?}, missing {lacking:?}")
    })?;
    let differ: Vec<_> = want
        .iter()
        .filter(|(k, v)| got[*k] != **v)
        .map(|(k, _)| k)
        .collect();
    check(differ.is_empty(), || format!("content differs: {differ:?}"))
}

fn preflight(args: &[&str]) -> std::process::Output {
    common::bin()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json_of(out: &std::process::Output) -> Result<Value, Failed> {
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "stdout is not JSON ({e}); exit {:?}; stderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into()
    })
}

fn program_names(report: &Value) -> Vec<String> {
    report["programs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The tests

fn pull_takes_only_the_bpf_dir_from_the_layers_that_hold_it() -> Result<(), Failed> {
    let reg = Registry::start(None)?;
    let image = build_image(&format!("v{VERSION}"), Clang::None);
    let reference = push(&image, &reg.host)?;
    let cache = tempfile::tempdir().unwrap();
    let r = pull(&reference, cache.path(), false)?;
    let (digest, from, note, platform) = image_origin(&r)?;
    check(digest == image.manifest_digest, || {
        format!(
            "{digest} is not this platform's manifest {}",
            image.manifest_digest
        )
    })?;
    check(from == "registry" && note.is_none(), || {
        format!("{from} {note:?}")
    })?;
    check(platform == format!("linux/{}", host_arch()), || {
        platform.clone()
    })?;
    same_tree(&r)?;
    // Only the config, the workdir layer and the install layer were downloaded: not the base,
    // not "envoy", not the other platform.
    let fetched = reg.blobs_fetched();
    let want: BTreeSet<String> = [
        image.config_digest.clone(),
        image.layers[3].clone(),
        image.layers[2].clone(),
    ]
    .into();
    check(fetched == want, || {
        format!("fetched {fetched:?}, expected {want:?}")
    })?;
    check(
        !image
            .other_platform_blobs
            .iter()
            .any(|b| fetched.contains(b)),
        || "the other platform's layer was fetched".into(),
    )?;
    // The cache: one entry by manifest digest with image.json and bpf/ only, a remembered tag,
    // nothing left in tmp/.
    let entry = cache
        .path()
        .join("images/sha256")
        .join(&image.manifest_digest[7..]);
    let mut names: Vec<_> = std::fs::read_dir(&entry)?
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    check(names == ["bpf", "image.json"], || format!("{names:?}"))?;
    let meta: Value = serde_json::from_slice(&std::fs::read(entry.join("image.json"))?)?;
    check(meta["bpf_layers"] == json!([image.layers[2]]), || {
        meta.to_string()
    })?;
    check(meta["index_digest"] == json!(image.index_digest), || {
        meta.to_string()
    })?;
    check(
        std::fs::read_dir(cache.path().join("refs"))?.count() >= 1,
        || "no remembered ref".into(),
    )?;
    check(
        std::fs::read_dir(cache.path().join("tmp"))?.count() == 0,
        || "tmp/ not empty".into(),
    )?;
    // A tag the registry does not have is refused by name, not taken from anywhere else.
    let err = pull(
        &format!("{}/cilium/cilium:v0.0.1", reg.host),
        cache.path(),
        false,
    )
    .err()
    .ok_or("an unknown tag was accepted")?;
    check(
        err.starts_with("--image ") && err.contains("v0.0.1"),
        || err.clone(),
    )?;
    Ok(())
}

fn a_pulled_image_works_offline_by_tag_and_by_digest() -> Result<(), Failed> {
    let mut reg = Registry::start(None)?;
    let image = build_image(&format!("v{VERSION}"), Clang::None);
    let reference = push(&image, &reg.host)?;
    let cache = tempfile::tempdir().unwrap();
    pull(&reference, cache.path(), false)?;
    let host = reg.host.clone();
    reg.stop();
    // The tag: what it resolved to last time, saying the registry was not reachable.
    let r = pull(&reference, cache.path(), false)?;
    let (digest, from, note, _) = image_origin(&r)?;
    check(digest == image.manifest_digest && from == "cache", || {
        format!("{digest} from {from}")
    })?;
    let note = note.unwrap_or_default();
    check(note.contains("not reachable"), || note.clone())?;
    same_tree(&r)?;
    // A digest (the platform's manifest, or the index the tag pointed at) asks no registry.
    for d in [&image.manifest_digest, &image.index_digest] {
        let r = pull(&format!("{host}/cilium/cilium@{d}"), cache.path(), false)?;
        let (digest, from, note, _) = image_origin(&r)?;
        check(
            digest == image.manifest_digest && from == "cache" && note.is_none(),
            || format!("@{d}: {digest} from {from} ({note:?})"),
        )?;
    }
    // A tag never pulled cannot be had offline: said so, with the cache's path.
    let err = pull(&format!("{host}/cilium/cilium:v9.9.9"), cache.path(), false)
        .err()
        .ok_or("an unseen tag resolved offline")?;
    check(
        err.contains("not in the cache") && err.contains("cannot be reached"),
        || err.clone(),
    )?;
    // The compile stage judges the cached tree: the report says which, by digest.
    let cache_arg = cache.path().display().to_string();
    let out = preflight(&[
        "compile",
        "--image",
        &reference,
        "--cache-dir",
        &cache_arg,
        "--cilium-version",
        VERSION,
        "--no-verify",
        "--format",
        "json",
    ]);
    check(out.status.code() != Some(2), || {
        format!("exit 2: {}", String::from_utf8_lossy(&out.stderr))
    })?;
    let report = json_of(&out)?;
    let tree = &report["tree"];
    check(
        tree["kind"] == "image"
            && tree["digest"] == json!(image.manifest_digest)
            && tree["from"] == "cache",
        || tree.to_string(),
    )?;
    // The real tree's programs as the agent builds them for the chart defaults
    // (bpf_alignchecker is not in the templates; bpf_wireguard only with WireGuard on).
    let names = program_names(&report);
    check(
        names.iter().any(|n| n == "bpf_alignchecker") && names.iter().any(|n| n == "bpf_lxc"),
        || format!("{names:?}"),
    )?;
    Ok(())
}

fn the_images_clang_is_used_when_it_runs_here_and_why_not_when_not() -> Result<(), Failed> {
    let reg = Registry::start(None)?;
    let runs = build_image(&format!("v{VERSION}"), Clang::Runs);
    let reference = push(&runs, &reg.host)?;
    let cache = tempfile::tempdir().unwrap();
    // First without the toolchain: the base layer is not downloaded.
    let r = pull(&reference, cache.path(), false)?;
    check(r.image_toolchain.is_none() && r.clang.is_none(), || {
        format!("{:?}", r.image_toolchain)
    })?;
    check(!reg.blobs_fetched().contains(&runs.layers[0]), || {
        "the base layer was fetched without --clang-from-image".into()
    })?;
    // Then with it: the base layer is fetched and added to the same cache entry; "envoy" never.
    let r = pull(&reference, cache.path(), true)?;
    let tc = r.image_toolchain.clone().ok_or("no image toolchain")?;
    check(tc.used && tc.version.as_deref() == Some("19.1.7"), || {
        format!("{tc:?}")
    })?;
    let fetched = reg.blobs_fetched();
    check(
        fetched.contains(&runs.layers[0]) && !fetched.contains(&runs.layers[1]),
        || format!("{fetched:?}"),
    )?;
    let entry = cache
        .path()
        .join("images/sha256")
        .join(&runs.manifest_digest[7..]);
    check(
        r.clang.as_deref() == Some(entry.join("toolchain/clang").as_path())
            && entry.join("toolchain/llc").is_file()
            && !entry.join("toolchain/bpftool").exists(),
        || format!("{:?}", r.clang),
    )?;
    // The compile runs that clang.
    let cache_arg = cache.path().display().to_string();
    let out = preflight(&[
        "compile",
        "--image",
        &reference,
        "--clang-from-image",
        "--cache-dir",
        &cache_arg,
        "--cilium-version",
        VERSION,
        "--no-verify",
        "--format",
        "json",
    ]);
    let report = json_of(&out)?;
    let clang = entry.join("toolchain/clang").display().to_string();
    check(
        report["image_toolchain"]["used"] == true
            && report["toolchain"]["toolchain"]["clang"] == json!(clang),
        || format!("{} / {}", report["image_toolchain"], report["toolchain"]),
    )?;
    check(
        report["programs"][0]["command"]
            .as_str()
            .is_some_and(|c| c.starts_with(&clang)),
        || report["programs"][0]["command"].to_string(),
    )?;
    // An image whose clang is built for another CPU: said so, and this machine's clang is used.
    let foreign = build_image(&format!("v{VERSION}-foreign"), Clang::Foreign);
    let reference = push(&foreign, &reg.host)?;
    let r = pull(&reference, cache.path(), true)?;
    let tc = r.image_toolchain.clone().ok_or("no image toolchain")?;
    let why = tc.why_not.clone().unwrap_or_default();
    check(!tc.used && r.clang.is_none(), || format!("{tc:?}"))?;
    check(
        why.contains("does not run here") && why.contains("built for"),
        || why.clone(),
    )?;
    Ok(())
}

fn a_layer_that_does_not_match_its_digest_is_refused_and_nothing_is_cached() -> Result<(), Failed> {
    let reg = Registry::start(None)?;
    let image = build_image(&format!("v{VERSION}"), Clang::None);
    let reference = push(&image, &reg.host)?;
    // The registry now serves other bytes under the install layer's digest.
    let data = reg.blob_data(&image.layers[2]);
    let mut bytes = std::fs::read(&data)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, bytes)?;
    let cache = tempfile::tempdir().unwrap();
    let err = pull(&reference, cache.path(), false)
        .err()
        .ok_or("a tampered layer was accepted")?;
    check(
        err.starts_with("--image ")
            && err.to_lowercase().contains("digest")
            && err.contains(&image.layers[2][..19]),
        || err.clone(),
    )?;
    let cached = cache.path().join("images/sha256");
    check(
        !cached.exists() || std::fs::read_dir(&cached)?.count() == 0,
        || "a refused image was cached".into(),
    )?;
    check(
        std::fs::read_dir(cache.path().join("tmp"))?.count() == 0,
        || "tmp/ not empty".into(),
    )?;
    let cache_arg = cache.path().display().to_string();
    let out = preflight(&["compile", "--image", &reference, "--cache-dir", &cache_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(
        out.status.code() == Some(2) && stderr.contains("--image") && stderr.contains("digest"),
        || format!("exit {:?}: {stderr}", out.status.code()),
    )?;
    Ok(())
}

fn the_registrys_bearer_token_challenge_is_followed() -> Result<(), Failed> {
    let mut tokens = TokenServer::start();
    let reg = Registry::start(Some((&tokens.realm(), "preflight-test")))?;
    let image = build_image(&format!("v{VERSION}"), Clang::None);
    let reference = push(&image, &reg.host)?;
    tokens.requests.lock().unwrap().clear();
    let cache = tempfile::tempdir().unwrap();
    let r = pull(&reference, cache.path(), false)?;
    same_tree(&r)?;
    let asked: Vec<String> = tokens
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|l| percent_decode(l))
        .collect();
    check(
        asked.iter().any(|l| {
            l.starts_with("GET /token?")
                && l.contains("scope=repository:cilium/cilium:pull")
                && l.contains("service=preflight-test")
        }),
        || format!("token requests: {asked:?}"),
    )?;
    // The registry challenged first, then served with the token.
    let log = reg.log();
    check(
        log.contains("\"GET /v2/ HTTP/1.1\" 401") && log.contains("silly authentication challenge"),
        || "no challenge in the registry's log".into(),
    )?;
    // Without a token endpoint there is no pull (and nothing cached to fall back on).
    tokens.stop();
    let fresh = tempfile::tempdir().unwrap();
    let err = pull(&reference, fresh.path(), false)
        .err()
        .ok_or("pulled without a token")?;
    check(err.contains("authentication"), || err.clone())?;
    Ok(())
}

fn docker_and_oci_archives_and_oci_layouts_give_the_same_tree() -> Result<(), Failed> {
    let image = build_image(&format!("v{VERSION}"), Clang::Runs);
    let dir = tempfile::tempdir().unwrap();
    let src = format!("oci:{}:{}", image.layout.path().display(), image.tag);
    let docker = dir.path().join("cilium-docker.tar");
    let oci = dir.path().join("cilium-oci.tar");
    skopeo(&[
        "copy",
        "--quiet",
        &src,
        &format!(
            "docker-archive:{}:cilium/cilium:{}",
            docker.display(),
            image.tag
        ),
    ])?;
    skopeo(&[
        "copy",
        "--quiet",
        &src,
        &format!("oci-archive:{}:{}", oci.display(), image.tag),
    ])?;
    // `docker save | gzip` too.
    let gz = dir.path().join("cilium-docker.tar.gz");
    let mut enc =
        flate2::write::GzEncoder::new(std::fs::File::create(&gz)?, flate2::Compression::fast());
    enc.write_all(&std::fs::read(&docker)?)?;
    enc.finish()?;
    let cache = tempfile::tempdir().unwrap();
    // docker-archive: keyed by the config digest (Docker's image ID), layers checked against
    // the diff ids; with the toolchain from the bottom layer.
    let r = from_archive(&docker, cache.path(), true)?;
    let (digest, from, _, platform) = image_origin(&r)?;
    check(digest == image.config_digest && from == "archive", || {
        format!("{digest} from {from}")
    })?;
    check(platform == format!("linux/{}", host_arch()), || {
        platform.clone()
    })?;
    same_tree(&r)?;
    check(r.image_toolchain.as_ref().is_some_and(|t| t.used), || {
        format!("{:?}", r.image_toolchain)
    })?;
    if let TreeOrigin::Image { reference, .. } = &r.origin {
        check(reference.contains("cilium/cilium:v"), || reference.clone())?;
    }
    let fresh = tempfile::tempdir().unwrap();
    let r = from_archive(&gz, fresh.path(), false)?;
    same_tree(&r)?;
    // OCI archive and the layout itself: keyed by this platform's manifest.
    for path in [oci.as_path(), image.layout.path()] {
        let fresh = tempfile::tempdir().unwrap();
        let r = from_archive(path, fresh.path(), false)?;
        let (digest, from, _, _) = image_origin(&r)?;
        check(digest == image.manifest_digest && from == "archive", || {
            format!("{}: {digest} from {from}", path.display())
        })?;
        same_tree(&r)?;
    }
    // Not an image: named.
    let err = from_archive(&dir.path().join("nothing"), cache.path(), false)
        .err()
        .ok_or("a missing archive was accepted")?;
    check(err.starts_with("--image-archive"), || err.clone())?;
    let err = from_archive(&shared_tar().unwrap(), cache.path(), false)
        .err()
        .ok_or("a bpf tar was taken for an image")?;
    check(
        err.contains("neither a docker archive") && err.contains("bpf.tar.gz"),
        || err.clone(),
    )?;
    Ok(())
}

fn tampered_archives_are_refused() -> Result<(), Failed> {
    let image = build_image(&format!("v{VERSION}"), Clang::None);
    // An OCI layout whose install layer blob changed under its name.
    let blob = image
        .layout
        .path()
        .join("blobs/sha256")
        .join(&image.layers[2][7..]);
    let mut bytes = std::fs::read(&blob)?;
    let dir = tempfile::tempdir().unwrap();
    let src = format!("oci:{}:{}", image.layout.path().display(), image.tag);
    let docker = dir.path().join("d.tar");
    skopeo(&[
        "copy",
        "--quiet",
        &src,
        &format!(
            "docker-archive:{}:cilium/cilium:{}",
            docker.display(),
            image.tag
        ),
    ])?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, bytes)?;
    let cache = tempfile::tempdir().unwrap();
    let err = from_archive(image.layout.path(), cache.path(), false)
        .err()
        .ok_or("a tampered layout was accepted")?;
    check(err.contains("blob digest mismatch"), || err.clone())?;
    // A docker archive whose install layer tar differs from its diff id: rewrite one byte of
    // the first file in it.
    let mut ar = tar::Archive::new(std::fs::File::open(&docker)?);
    let manifest: Value = {
        let mut m = None;
        for e in tar::Archive::new(std::fs::File::open(&docker)?).entries()? {
            let mut e = e?;
            if e.path()?.to_str() == Some("manifest.json") {
                let mut s = String::new();
                e.read_to_string(&mut s)?;
                m = Some(serde_json::from_str(&s)?);
            }
        }
        m.ok_or("no manifest.json")?
    };
    let install = manifest[0]["Layers"][2]
        .as_str()
        .ok_or("no layer 2")?
        .to_string();
    let tampered = dir.path().join("tampered.tar");
    let mut out = tar::Builder::new(std::fs::File::create(&tampered)?);
    for e in ar.entries()? {
        let mut e = e?;
        let mut header = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data)?;
        if e.path()?.to_string_lossy() == install {
            // Past the first header: inside the first file's data (a layer tar is plain here).
            data[512 + 8] ^= 0x01;
        }
        out.append_data(&mut header, e.path()?, &data[..])?;
    }
    out.finish()?;
    drop(out);
    let err = from_archive(&tampered, cache.path(), false)
        .err()
        .ok_or("a tampered docker archive was accepted")?;
    check(err.contains("diff id") && err.contains("mismatch"), || {
        err.clone()
    })?;
    check(
        !cache.path().join("images/sha256").exists()
            || std::fs::read_dir(cache.path().join("images/sha256"))?.count() == 0,
        || "a refused image was cached".into(),
    )?;
    Ok(())
}

fn compile_judges_a_bpf_tar_and_refuses_hostile_ones() -> Result<(), Failed> {
    let tar = shared_tar().unwrap();
    let tar_arg = tar.display().to_string();
    let out = preflight(&[
        "compile",
        "--bpf-tar",
        &tar_arg,
        "--cilium-version",
        VERSION,
        "--no-verify",
        "--format",
        "json",
    ]);
    check(out.status.code() != Some(2), || {
        format!("exit 2: {}", String::from_utf8_lossy(&out.stderr))
    })?;
    let report = json_of(&out)?;
    check(
        report["tree"] == json!({"kind": "tar", "file": tar_arg, "inner": "bpf"}),
        || report["tree"].to_string(),
    )?;
    let names = program_names(&report);
    check(names.iter().any(|n| n == "bpf_alignchecker"), || {
        format!("{names:?}")
    })?;
    // Findings name the tar's files, not a scratch dir that is gone after the run.
    let findings: Vec<&Value> = report["programs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| &p["findings"])
        .collect();
    let findings = serde_json::to_string(&findings)?;
    check(!findings.contains("preflight-bpf-tar."), || {
        "a scratch path in the findings".into()
    })?;
    // Bad input: exit 2, the file named, nothing written outside the scratch dir.
    let dir = tempfile::tempdir().unwrap();
    let evil = dir.path().join("evil.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&evil)?);
        let mut h = tar::Header::new_gnu();
        let name = b"bpf/../../../escaped";
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &b"x"[..])?;
        b.finish()?;
    }
    let fifo = dir.path().join("fifo.tar");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU)?;
    for (file, needle) in [
        (evil.as_path(), "climbs out"),
        (fifo.as_path(), "not a regular file"),
        (dir.path(), "not a regular file"),
    ] {
        let started = Instant::now();
        let out = preflight(&["compile", "--bpf-tar", &file.display().to_string()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        check(
            out.status.code() == Some(2)
                && stderr.contains(&format!("--bpf-tar {}", file.display()))
                && stderr.contains(needle),
            || format!("{}: exit {:?}: {stderr}", file.display(), out.status.code()),
        )?;
        check(started.elapsed() < Duration::from_secs(30), || {
            "unbounded".into()
        })?;
    }
    check(
        !dir.path().parent().unwrap().join("escaped").exists(),
        || "the traversal entry was written".into(),
    )?;
    Ok(())
}

fn run_judges_the_tree_it_is_given() -> Result<(), Failed> {
    let tar = shared_tar().unwrap().display().to_string();
    let check_of = |report: &Value, id: &str| -> Value {
        report["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let out = preflight(&[
        "run",
        "--no-canaries",
        "--cilium-version",
        VERSION,
        "--bpf-tar",
        &tar,
        "--format",
        "json",
    ]);
    let report = json_of(&out)?;
    let tree = check_of(&report, "compile.tree");
    check(
        tree["status"] == "pass"
            && tree["detail"]
                .as_str()
                .is_some_and(|d| d.contains("real tree: tar") && d.contains(&tar)),
        || tree.to_string(),
    )?;
    check(
        check_of(&report, "compile.bpf_lxc")["status"] != Value::Null,
        || "no compile.bpf_lxc check".into(),
    )?;
    // Without a tree: the templates, labelled as the fallback.
    let out = preflight(&[
        "run",
        "--no-canaries",
        "--cilium-version",
        VERSION,
        "--format",
        "json",
    ]);
    let report = json_of(&out)?;
    let tree = check_of(&report, "compile.tree");
    check(
        tree["status"] == "warn"
            && tree["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("built-in templates")),
        || tree.to_string(),
    )?;
    Ok(())
}
