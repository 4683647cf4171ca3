//! The flags that choose the datapath sources, shared by `compile` and `run` (flattened into
//! both). Only clap glue: `compile::source::Request` is what the rest of the code sees.
use std::path::PathBuf;

use clap::Args;

use crate::compile::source::Request;

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Datapath sources (default: the built-in templates)")]
pub struct TreeArgs {
    /// A Cilium bpf dir: a checkout's bpf/, or a copy of an image's /var/lib/cilium/bpf.
    #[arg(long, value_name = "DIR")]
    pub bpf_dir: Option<PathBuf>,
    /// A .tar or .tar.gz of a bpf dir (the tree at the top, under bpf/ or under
    /// var/lib/cilium/bpf/), unpacked into a scratch dir.
    #[arg(long, value_name = "FILE", conflicts_with = "bpf_dir")]
    pub bpf_tar: Option<PathBuf>,
    /// A Cilium image, e.g. quay.io/cilium/cilium:v1.18.3: its /var/lib/cilium/bpf is pulled
    /// (this platform's layers that hold it, nothing else), checked against its digests and
    /// cached by digest; a tag seen before, or a digest, works offline from the cache.
    #[arg(long, value_name = "REF", conflicts_with_all = ["bpf_dir", "bpf_tar"])]
    pub image: Option<String>,
    /// A saved Cilium image: `docker save` / `skopeo copy … docker-archive:` file, an OCI
    /// archive (`oci-archive:`), or an OCI layout dir; gzip-compressed files too.
    #[arg(long, value_name = "FILE|DIR", conflicts_with_all = ["bpf_dir", "bpf_tar", "image"])]
    pub image_archive: Option<PathBuf>,
    /// Compile with the image's own clang and llc (/usr/local/bin in Cilium images) when they
    /// run on this machine; when they do not, say why and use this machine's clang.
    #[arg(long, conflicts_with = "clang")]
    pub clang_from_image: bool,
    /// Use this clang instead of the one matching the target's bundled LLVM.
    #[arg(long, value_name = "PATH")]
    pub clang: Option<PathBuf>,
    /// The image cache (default: /var/cache/preflight as root, else
    /// $XDG_CACHE_HOME/preflight or ~/.cache/preflight).
    #[arg(long, value_name = "DIR", env = "PREFLIGHT_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl TreeArgs {
    pub fn request(&self, progress: bool) -> Request {
        Request {
            bpf_dir: self.bpf_dir.clone(),
            bpf_tar: self.bpf_tar.clone(),
            image: self.image.clone(),
            image_archive: self.image_archive.clone(),
            clang_from_image: self.clang_from_image,
            clang: self.clang.clone(),
            cache_dir: self.cache_dir.clone(),
            progress,
        }
    }

    /// Whether any flag names a tree (a Job's pods get theirs from the init container).
    pub fn names_a_tree(&self) -> bool {
        self.bpf_dir.is_some()
            || self.bpf_tar.is_some()
            || self.image.is_some()
            || self.image_archive.is_some()
    }
}
