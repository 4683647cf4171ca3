//! The built-in datapath tree (fixtures/datapath), embedded in the binary so `preflight run`
//! needs nothing beside it, and unpacked into a scratch bpf dir per run.
use std::path::Path;

use include_dir::{Dir, include_dir};

static DATAPATH: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../fixtures/datapath");

/// The programs cilium-agent compiles from a bpf dir, in the order reports list them.
pub const PROGRAMS: &[&str] = &[
    "bpf_lxc",
    "bpf_host",
    "bpf_overlay",
    "bpf_sock",
    "bpf_xdp",
    "bpf_wireguard",
    "bpf_network",
];

/// Unpacks the tree into `dir` and pins its sources to Cilium 1.`minor`.
pub fn unpack(dir: &Path, minor: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    DATAPATH.extract(dir)?;
    std::fs::write(
        dir.join("include/bpf/source_version.h"),
        format!(
            "/* Which Cilium minor these sources model (written by preflight). */\n\
             #ifndef DATAPATH_MINOR\n#define DATAPATH_MINOR {minor}\n#endif\n"
        ),
    )
}

/// Whether a bpf dir is the built-in templates' layout (an unpacked, perhaps edited, copy):
/// their pin of the modelled minor is not in any Cilium tree.
pub fn is_builtin_layout(dir: &Path) -> bool {
    dir.join("include/bpf/source_version.h").is_file()
}

/// The programs present in a bpf dir (a real Cilium tree may lack some, e.g. bpf_wireguard.c
/// before 1.16).
pub fn programs_in(dir: &Path) -> Vec<String> {
    PROGRAMS
        .iter()
        .filter(|p| dir.join(format!("{p}.c")).is_file())
        .map(|p| p.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacked_tree_has_programs_dummies_and_the_version_pin() {
        let dir = tempfile::tempdir().unwrap();
        unpack(dir.path(), 16).unwrap();
        assert_eq!(
            programs_in(dir.path()),
            ["bpf_lxc", "bpf_host", "bpf_overlay", "bpf_sock", "bpf_xdp"]
        );
        for dummy in ["node_config.h", "ep_config.h", "netdev_config.h"] {
            assert!(dir.path().join(dummy).is_file(), "{dummy}");
        }
        let pin = std::fs::read_to_string(dir.path().join("include/bpf/source_version.h")).unwrap();
        assert!(pin.contains("#define DATAPATH_MINOR 16"));
    }
}
