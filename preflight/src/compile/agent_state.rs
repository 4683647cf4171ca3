//! Agent-faithful state for a real Cilium bpf tree: the headers cilium-agent of the tree's
//! version writes for these Helm values, and the programs it builds with their flags.
//!
//! - `globals/node_config.h`: the agent's values for the settings that depend on the values
//!   ([`agent_facts::node_lines`]), then the tree's dummy node_config.h with everything the
//!   agent writes elsewhere or differently dropped (compile/dummy.rs);
//! - `templates/<hash>/ep_config.h`, one for the endpoint template (bpf_lxc) and one for the
//!   host endpoint (bpf_host): [`agent_facts::ep_lines`];
//! - `netdev_config.h`: the daemon's options; `filter_config.h` only with the XDP prefilter;
//! - the feature headers (`include/bpf/features*.h` of the working copy): the `HAVE_*` macros
//!   the sources test, from the probes;
//!
//! each filtered through the tree ([`TreeScan::wants`]): a name the sources do not use, or
//! that their load-time configuration or their own code defines, is not written.
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
};

use sha2::{Digest, Sha256};

use super::{
    agent_facts::{self, FEATURE_MACROS, Line, ProgramPlan},
    agent_options::AgentOptions,
    dummy,
    tree_scan::TreeScan,
};
use crate::probe::ProbeReport;

#[derive(Debug, Clone)]
pub struct AgentState {
    pub node_config: String,
    /// ep_config.h of the endpoint template (bpf_lxc) and of the host endpoint (bpf_host).
    pub ep_lxc: String,
    pub ep_host: String,
    pub netdev_config: String,
    /// Only with the XDP prefilter; otherwise bpf_xdp reads the bpf dir's, as with the agent.
    pub filter_config: Option<String>,
    /// `include/bpf/<file>` → text.
    pub feature_headers: BTreeMap<String, String>,
    /// Each `HAVE_*` the sources test and whether it is defined.
    pub have: BTreeMap<String, bool>,
    /// `HAVE_*` names the sources test that preflight has no probe for (left undefined).
    pub have_unknown: Vec<String>,
    pub programs: Vec<ProgramPlan>,
    /// Programs present in the tree that the agent does not build here, with why.
    pub not_built: Vec<(String, String)>,
    /// Template directory names (sha256 of the endpoint's headers, as the agent hashes its
    /// configuration): bpf_lxc's and bpf_host's.
    pub lxc_hash: String,
    pub host_hash: String,
}

/// Whether a line goes into a header for this tree.
fn written(line: &Line, tree: &TreeScan) -> bool {
    if !line.on {
        return false;
    }
    if let Some(helper) = line.needs
        && !tree.defines.contains(helper)
    {
        return false;
    }
    if line.needs == Some("DECLARE_CONFIG") {
        // A load-time variable: only when the sources read it and do not declare it.
        return tree.references(&line.name) && !tree.config_vars.contains(&line.name);
    }
    line.always || tree.wants(&line.name)
}

fn render(title: &str, include: bool, lines: &[Line], tree: &TreeScan) -> String {
    let mut out = format!("/* {title} */\n");
    if include {
        out.push_str("#include \"lib/utils.h\"\n\n");
    }
    for l in lines.iter().filter(|l| written(l, tree)) {
        out.push_str(&l.text);
        out.push('\n');
    }
    out
}

/// Every name the agent writes into another header or passes per program, and the dummy's
/// test-only names: none of them belong in node_config.h.
fn not_node_names(o: &AgentOptions, plans: &[ProgramPlan]) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = agent_facts::DUMMY_ONLY
        .iter()
        .map(|s| s.to_string())
        .collect();
    for l in agent_facts::ep_lines(o, false)
        .into_iter()
        .chain(agent_facts::ep_lines(o, true))
        .chain(agent_facts::netdev_lines(o))
    {
        names.insert(l.name);
    }
    for p in plans {
        for d in &p.defines {
            if let Some(name) = d.strip_prefix("-D").and_then(|d| d.split('=').next()) {
                names.insert(name.to_string());
            }
        }
    }
    names
}

fn have_present(probes: Option<&ProbeReport>, needs: &[(&str, &str)]) -> Option<bool> {
    let Some(p) = probes else {
        return Some(true);
    };
    let mut all = true;
    for (prog, helper) in needs {
        match p.helper(prog, helper) {
            Some(s) => all &= s.is_available(),
            None => return None,
        }
    }
    Some(all)
}

pub fn generate(tree: &TreeScan, o: &AgentOptions, probes: Option<&ProbeReport>) -> AgentState {
    let version = format!("1.{}", o.minor);
    let (mut programs, mut not_built) = agent_facts::program_plans(o);
    programs.retain(|p| tree.programs.contains(&p.name));
    not_built.retain(|(name, _)| tree.programs.contains(name));
    // Programs in the tree the agent never compiles at run time (pre-built or test-only).
    for extra in &tree.programs {
        let known =
            programs.iter().any(|p| &p.name == extra) || not_built.iter().any(|(n, _)| n == extra);
        if !known {
            not_built.push((
                extra.clone(),
                "not compiled by the agent at run time".into(),
            ));
        }
    }

    // node_config.h: the agent's lines, then the dummy's body.
    let model = agent_facts::node_lines(o);
    let owned: BTreeSet<String> = model.iter().map(|l| l.name.clone()).collect();
    let mut drop = not_node_names(o, &programs);
    drop.extend(owned.iter().cloned());
    drop.extend(tree.config_macros.iter().cloned());
    let body = tree
        .dummies
        .get("node_config.h")
        .map(|d| dummy::body(d, &drop, &drop))
        .unwrap_or_default();
    let (includes, rest): (Vec<&str>, Vec<&str>) = body
        .lines()
        .partition(|l| l.trim_start().starts_with("#include"));
    let mut node = format!(
        "/* Node configuration as cilium-agent {version} writes it for these values (preflight:\n \
         agent facts from compile/agent_facts.rs, the rest from this tree's node_config.h). */\n"
    );
    // The agent starts every header with `#include "lib/utils.h"` (writeIncludes).
    let has_utils = tree.paths.contains("lib/utils.h");
    if has_utils {
        node.push_str("#include \"lib/utils.h\"\n");
    }
    for i in includes {
        if !(has_utils && i.contains("\"lib/utils.h\"")) {
            let _ = writeln!(node, "{i}");
        }
    }
    node.push('\n');
    let (defines, declarations): (Vec<&Line>, Vec<&Line>) =
        model.iter().partition(|l| l.needs.is_none());
    for l in defines.into_iter().filter(|l| written(l, tree)) {
        let _ = writeln!(node, "{}", l.text);
    }
    node.push('\n');
    for r in rest {
        let _ = writeln!(node, "{r}");
    }
    for l in declarations.into_iter().filter(|l| written(l, tree)) {
        let _ = writeln!(node, "{}", l.text);
    }

    let ep_lxc = render(
        &format!("Endpoint template configuration as cilium-agent {version} writes it (preflight)"),
        true,
        &agent_facts::ep_lines(o, false),
        tree,
    );
    let ep_host = render(
        &format!("Host endpoint configuration as cilium-agent {version} writes it (preflight)"),
        true,
        &agent_facts::ep_lines(o, true),
        tree,
    );
    let netdev_config = render(
        &format!("Device configuration as cilium-agent {version} writes it (preflight)"),
        false,
        &agent_facts::netdev_lines(o),
        tree,
    );
    let filter_config = o.xdp_prefilter.then(|| {
        let body = tree
            .dummies
            .get("filter_config.h")
            .map(|d| dummy::body(d, &BTreeSet::new(), &BTreeSet::new()))
            .unwrap_or_default();
        format!("/* XDP prefilter configuration (preflight: this tree's layout) */\n{body}")
    });

    // Feature headers: what the sources test, from the probes.
    let mut have = BTreeMap::new();
    let mut files: BTreeMap<&str, Vec<&str>> = ["features.h", "features_skb.h", "features_xdp.h"]
        .into_iter()
        .map(|f| (f, Vec::new()))
        .collect();
    for (name, file, needs) in FEATURE_MACROS {
        if !tree.have_refs.contains(*name) {
            continue;
        }
        // A helper the probes did not cover counts as present (it was not asked, so not missing).
        let present = have_present(probes, needs).unwrap_or(true);
        have.insert(name.to_string(), present);
        if present {
            files.entry(file).or_default().push(name);
        }
    }
    let have_unknown: Vec<String> = tree
        .have_refs
        .iter()
        .filter(|h| !FEATURE_MACROS.iter().any(|(n, ..)| n == &h.as_str()))
        .cloned()
        .collect();
    let feature_headers = files
        .into_iter()
        .map(|(file, names)| {
            let mut text = String::from(
                "/* Generated by preflight as cilium-agent does at startup (probes.go). */\n\
                 #pragma once\n",
            );
            if file != "features.h" {
                text.push_str("#include \"features.h\"\n");
            }
            for n in names {
                let _ = writeln!(text, "#define {n} 1");
            }
            (file.to_string(), text)
        })
        .collect();

    let hash = |ep: &str| format!("{:x}", Sha256::digest(format!("{node}\n{ep}").as_bytes()));
    AgentState {
        lxc_hash: hash(&ep_lxc),
        host_hash: hash(&ep_host),
        node_config: node,
        ep_lxc,
        ep_host,
        netdev_config,
        filter_config,
        feature_headers,
        have,
        have_unknown,
        programs,
        not_built,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cilium::Target,
        compile::{features, profile::for_minor, tree_scan},
    };

    /// A tree with the shape of a real one: a dummy node_config.h, sources that use some names,
    /// a load-time configuration header that defines one.
    fn tree(dir: &std::path::Path) -> TreeScan {
        let put = |rel: &str, text: &str| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        put(
            "node_config.h",
            "/* This is just a dummy header */\n#pragma once\n#include <lib/static_data.h>\n\
             #define TUNNEL_PORT 8472\n#define ENDPOINTS_MAP test_cilium_lxc\n\
             #define ENABLE_ARP_RESPONDER\n#define CALLS_MAP test_cilium_calls_65535\n\
             #ifndef MONITOR_AGGREGATION\n#define MONITOR_AGGREGATION 5\n#endif\n\
             #ifdef ENABLE_NODEPORT\n#define NODEPORT_NEIGH4_SIZE 1\n#endif\n\
             #define SECLABEL 7\n",
        );
        put("lib/utils.h", "#pragma once\n");
        put(
            "lib/static_data.h",
            "#define DECLARE_CONFIG(t, n, d) volatile const t __config_##n;\n",
        );
        put(
            "include/bpf/config/endpoint.h",
            "DECLARE_CONFIG(__u32, security_label, \"x\")\n#define SECLABEL CONFIG(security_label)\n",
        );
        put(
            "bpf_lxc.c",
            "#include <node_config.h>\nint f(void) { return TUNNEL_PORT + ENDPOINTS_MAP + \
             SECLABEL + MONITOR_AGGREGATION + ENABLE_ARP_RESPONDER; }\n\
             #ifdef ENABLE_IPV4\n#endif\n#ifdef TUNNEL_MODE\n#endif\n#ifdef HAVE_FIB_NEIGH\n#endif\n\
             #ifdef HAVE_SOMETHING_NEW\n#endif\n",
        );
        put("bpf_host.c", "#include <node_config.h>\n");
        tree_scan::scan(dir, None).unwrap()
    }

    #[test]
    fn headers_follow_the_tree_and_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let scan = tree(dir.path());
        let target = Target::chart_defaults("1.18.3");
        let f = features::derive(&for_minor(18), &target, None);
        let o = AgentOptions::new(18, &target, &f);
        let st = generate(&scan, &o, None);
        let node = &st.node_config;
        // The agent's values replace the dummy's; names the sources use are written.
        assert!(
            node.contains("#define TUNNEL_PORT 8472\n") && node.contains("#define TUNNEL_MODE 1")
        );
        assert_eq!(node.matches("#define TUNNEL_PORT").count(), 1, "{node}");
        assert!(node.contains("#define ENABLE_IPV4 1"));
        // Not used by these sources: not written.
        assert!(!node.contains("ENABLE_BANDWIDTH_MANAGER") && !node.contains("ENCAP_IFINDEX"));
        // The dummy's endpoint names, test names and load-time names are gone; maps renamed;
        // conditionals kept; includes first; no dummy comment.
        for gone in [
            "ENABLE_ARP_RESPONDER",
            "CALLS_MAP",
            "MONITOR_AGGREGATION",
            "SECLABEL",
            "dummy",
        ] {
            assert!(!node.contains(gone), "{gone} in:\n{node}");
        }
        assert!(node.contains("#define ENDPOINTS_MAP cilium_lxc"));
        assert!(node.contains("#ifdef ENABLE_NODEPORT\n#endif"), "{node}");
        let include = node.find("#include <lib/static_data.h>").unwrap();
        assert!(include < node.find("#define ENABLE_IPV4").unwrap());
        // ep_config.h: the endpoint's names, not those the load-time config defines.
        assert!(st.ep_lxc.contains("#define ENABLE_ARP_RESPONDER 1"));
        assert!(st.ep_lxc.contains("#define MONITOR_AGGREGATION 3"));
        assert!(!st.ep_lxc.contains("SECLABEL") && !st.ep_lxc.contains("CALLS_MAP"));
        assert!(st.ep_host.contains("#define HOST_ENDPOINT 1"));
        assert_ne!(st.lxc_hash, st.host_hash);
        // Features: what the sources test; an unknown one is reported, not guessed.
        assert_eq!(st.have.get("HAVE_FIB_NEIGH"), Some(&true));
        assert_eq!(st.have_unknown, ["HAVE_SOMETHING_NEW"]);
        assert!(st.feature_headers["features.h"].contains("#define HAVE_FIB_NEIGH 1"));
        // Programs: the two in the tree, both endpoints; the rest absent from the tree.
        let names: Vec<_> = st.programs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bpf_lxc", "bpf_host"]);
        // 1.20: the ARP responder is load-time, the endpoint writes no such macro when the
        // sources do not use it.
        std::fs::write(dir.path().join("bpf_lxc.c"), "int x;\n").unwrap();
        let scan = tree_scan::scan(dir.path(), None).unwrap();
        let st = generate(&scan, &AgentOptions::new(20, &target, &f), None);
        assert!(!st.ep_lxc.contains("ENABLE_ARP_RESPONDER"), "{}", st.ep_lxc);
    }
}
