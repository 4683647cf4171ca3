use serde::{Deserialize, Serialize};

/// Where a check belongs; the text report groups by it and check ids start with it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Area {
    /// bpf() itself: program, map and helper support, ISA, limits.
    Bpf,
    /// Real programs attached to real hooks in a scratch network namespace.
    Attach,
    Kernel,
    Modules,
    Mounts,
    Sysctl,
    Network,
    Cni,
    K3s,
    State,
    Distro,
    Compile,
    Values,
}

impl Area {
    pub fn title(self) -> &'static str {
        match self {
            Self::Bpf => "eBPF support",
            Self::Attach => "Attach canaries",
            Self::Kernel => "Kernel config",
            Self::Modules => "Kernel modules",
            Self::Mounts => "Mounts",
            Self::Sysctl => "Sysctls",
            Self::Network => "Network devices",
            Self::Cni => "CNI",
            Self::K3s => "k3s / Rancher Desktop",
            Self::State => "Cilium state",
            Self::Distro => "Distribution and packet filtering",
            Self::Compile => "Datapath compile",
            Self::Values => "Helm values",
        }
    }
}
