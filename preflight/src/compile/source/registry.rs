//! Pulling from a registry over the OCI distribution API, with oci-client: the anonymous
//! bearer-token flow (`GET /v2/` → `WWW-Authenticate: Bearer realm=…,service=…` → the realm's
//! token for `repository:<name>:pull`), the manifest (an index is narrowed to this machine's
//! platform), the config, and layers one at a time into the cache's `tmp/`, each checked
//! against its digest while it streams in (oci-client) and again when it is read (tarx).
//!
//! Registries on a loopback address (`localhost`, `127.0.0.0/8`, `[::1]`) are spoken to over
//! plain HTTP, as Docker and containerd treat them as insecure by default; every other one
//! over HTTPS with the system's trust store.
use std::{
    io::{IsTerminal as _, Read, Write as _},
    path::{Path, PathBuf},
    str::FromStr as _,
    time::{Duration, Instant},
};

use futures_util::StreamExt as _;
use oci_client::{
    Client, Reference, RegistryOperation,
    client::{ClientConfig, ClientProtocol},
    errors::OciDistributionError,
    manifest::{ImageIndexEntry, OciDescriptor, OciImageManifest},
    secrets::RegistryAuth,
};

use super::{
    cache::LayerMeta,
    image::{Blobs, Check},
    tarx,
};

/// Why a pull failed: the registry could not be reached (the cache may answer instead), or it
/// answered something we refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullError {
    Unreachable(String),
    Refused(String),
}

impl PullError {
    pub fn message(&self) -> &str {
        match self {
            PullError::Unreachable(m) | PullError::Refused(m) => m,
        }
    }
}

/// A manifest resolved for this platform.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub manifest: OciImageManifest,
    pub digest: String,
    pub index_digest: Option<String>,
}

/// The image config fields preflight reads.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ImageConfig {
    pub fn platform(&self) -> String {
        format!("{}/{}", self.os, self.architecture)
    }
}

/// At most this many layers, and a config of at most 4 MiB.
pub const MAX_LAYERS: usize = 256;
pub const MAX_CONFIG_BYTES: i64 = 4 * 1024 * 1024;

/// Parses an image reference the way docker does (`cilium/cilium` is on docker.io).
pub fn parse_reference(text: &str) -> Result<Reference, String> {
    Reference::from_str(text).map_err(|e| format!("--image {text:?}: not an image reference ({e})"))
}

/// Whether a registry host is loopback (spoken to over HTTP).
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Picks this machine's platform from an index (any CPU variant; attestation entries, which
/// carry `unknown/unknown`, never match).
fn pick_platform(entries: &[ImageIndexEntry]) -> Option<String> {
    let want = super::image::host_platform();
    entries
        .iter()
        .find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| format!("{}/{}", p.os, p.architecture) == want)
        })
        .map(|e| e.digest.clone())
}

pub struct Registry {
    rt: tokio::runtime::Runtime,
    client: Client,
    pub reference: Reference,
    tmp: PathBuf,
    progress: bool,
}

fn classify(what: &str, e: OciDistributionError) -> PullError {
    match &e {
        OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() => {
            PullError::Unreachable(format!("{what}: {e}"))
        }
        OciDistributionError::RequestError(r) if r.is_request() || r.is_body() => {
            PullError::Unreachable(format!("{what}: {e}"))
        }
        _ => PullError::Refused(format!("{what}: {e}")),
    }
}

impl Registry {
    /// A client for `reference`'s registry; downloads go to `tmp` (in the cache, so a layer
    /// never sits in a world-readable place).
    pub fn new(reference: Reference, tmp: &Path, progress: bool) -> Result<Self, String> {
        // reqwest is built without a default crypto provider (rustls-tls-no-provider): install
        // ring once per process (a second install is refused, harmlessly). rustls deprecates
        // ring's provider for its lack of post-quantum key exchange; what is pulled is public
        // and checked against its digests, and ring builds in a fraction of aws-lc's time.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = reference.resolve_registry().to_string();
        let protocol = if is_loopback(&registry) {
            ClientProtocol::HttpsExcept(vec![registry])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            platform_resolver: Some(Box::new(pick_platform)),
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: concat!("preflight/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        Ok(Self {
            rt,
            client: Client::new(config),
            reference,
            tmp: tmp.to_path_buf(),
            progress,
        })
    }

    /// Authenticates (anonymous token flow, if the registry asks for one) and resolves the
    /// reference to this platform's manifest. The manifest's digest is checked against the
    /// reference's, when it has one (oci-client).
    pub fn resolve(&self) -> Result<Resolved, PullError> {
        let registry = self.reference.resolve_registry().to_string();
        let anonymous = RegistryAuth::Anonymous;
        self.rt
            .block_on(
                self.client
                    .auth(&self.reference, &anonymous, RegistryOperation::Pull),
            )
            .map_err(|e| classify(&format!("registry {registry}: authentication"), e))?;
        let (manifest, digest, index_digest) = self
            .rt
            .block_on(
                self.client
                    .pull_image_manifest_and_list_digest(&self.reference, &anonymous),
            )
            .map_err(|e| classify(&format!("{}: manifest", self.reference), e))?;
        if manifest.layers.len() > MAX_LAYERS {
            return Err(PullError::Refused(format!(
                "{}: {} layers; at most {MAX_LAYERS}",
                self.reference,
                manifest.layers.len()
            )));
        }
        Ok(Resolved {
            manifest,
            digest,
            index_digest,
        })
    }

    /// The image config (checked against its digest by oci-client).
    pub fn config(&self, desc: &OciDescriptor) -> Result<ImageConfig, PullError> {
        if desc.size > MAX_CONFIG_BYTES {
            return Err(PullError::Refused(format!(
                "{}: config of {} bytes; at most {MAX_CONFIG_BYTES}",
                self.reference, desc.size
            )));
        }
        let mut bytes = Vec::new();
        self.rt
            .block_on(self.client.pull_blob(&self.reference, desc, &mut bytes))
            .map_err(|e| classify(&format!("{}: config {}", self.reference, desc.digest), e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            PullError::Refused(format!(
                "{}: config {} is not an image config: {e}",
                self.reference, desc.digest
            ))
        })
    }

    /// Downloads one blob into a file under `tmp`, with progress on stderr.
    fn download(&self, index: usize, layer: &LayerMeta) -> Result<PathBuf, String> {
        let hex = super::cache::digest_hex(&layer.digest)?;
        let limit = tarx::Limits::LAYER.raw_bytes;
        if layer.size < 0 || layer.size as u64 > limit {
            return Err(format!(
                "layer {index} ({}): {} bytes; at most {} MiB",
                layer.digest,
                layer.size,
                limit >> 20
            ));
        }
        let path = self.tmp.join(format!("blob-{hex}"));
        let desc = OciDescriptor {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: layer.size,
            ..OciDescriptor::default()
        };
        let name = format!("layer {index} ({})", short(&layer.digest));
        let mut progress = Progress::start(&name, layer.size as u64, self.progress);
        let result: Result<u64, String> = self.rt.block_on(async {
            let mut stream = self
                .client
                .pull_blob_stream(&self.reference, &desc)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            let mut file =
                std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut got = 0u64;
            while let Some(chunk) = stream.next().await {
                // oci-client checks the digest as the last chunk arrives: a mismatch is an
                // error here.
                let chunk = chunk.map_err(|e| format!("{name}: download refused: {e}"))?;
                got += chunk.len() as u64;
                if got > layer.size as u64 {
                    return Err(format!(
                        "{name}: the registry sent more than the {} bytes the manifest names",
                        layer.size
                    ));
                }
                file.write_all(&chunk)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                progress.advance(got);
            }
            file.flush().map_err(|e| e.to_string())?;
            Ok(got)
        });
        progress.finish(result.is_ok());
        let got = result.inspect_err(|_| {
            let _ = std::fs::remove_file(&path);
        })?;
        if got != layer.size as u64 {
            let _ = std::fs::remove_file(&path);
            return Err(format!(
                "{name}: {got} bytes received, the manifest names {}",
                layer.size
            ));
        }
        Ok(path)
    }
}

impl Blobs for Registry {
    fn open_layer(
        &mut self,
        index: usize,
        layer: &LayerMeta,
    ) -> Result<(Box<dyn Read + '_>, Check), String> {
        let path = self.download(index, layer)?;
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // Unlinked now, read through the open file: nothing is left if we are killed.
        let _ = std::fs::remove_file(&path);
        Ok((Box::new(file), Check::Blob(layer.digest.clone())))
    }
}

/// `sha256:0123456789ab`.
pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

/// Download progress on stderr: a bar on a terminal, a line at the start and end otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    name: String,
    started: Instant,
    total: u64,
    enabled: bool,
}

impl Progress {
    fn start(name: &str, total: u64, enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(format!("pulling {name}"));
            bar
        });
        if enabled && bar.is_none() {
            eprintln!(
                "preflight: pulling {name}, {:.1} MiB",
                total as f64 / 1048576.0
            );
        }
        Self {
            bar,
            name: name.to_string(),
            started: Instant::now(),
            total,
            enabled,
        }
    }
    fn advance(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }
    fn finish(self, ok: bool) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        if self.enabled && ok {
            let secs = self.started.elapsed().as_secs_f64();
            eprintln!(
                "preflight: pulled {} ({:.1} MiB in {secs:.1} s)",
                self.name,
                self.total as f64 / 1048576.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised() {
        for yes in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "quay.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:5000",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn references_parse_like_docker_and_bad_ones_name_the_flag() {
        let r = parse_reference("quay.io/cilium/cilium:v1.18.3").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("quay.io", "cilium/cilium", Some("v1.18.3"))
        );
        let r = parse_reference("cilium/cilium").unwrap();
        assert_eq!(r.registry(), "docker.io");
        let err = parse_reference("Not A Ref!").unwrap_err();
        assert!(err.starts_with("--image \"Not A Ref!\""), "{err}");
    }
}
