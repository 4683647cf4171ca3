//! Apply: network links (`ip`): delete flannel's (their description journaled) and recreate them.

use anyhow::bail;

use super::args;
use crate::plan::{
    exec::Executor,
    journal::{EntryState, LinkSpec, Undo},
    node::{self, LinkState},
    runner::{Runner, Tool},
};

/// `Action::DeleteLink`: the link deleted, its spec journaled to recreate it; nothing to do when
/// it does not exist.
pub(in crate::plan) fn delete_link(
    ex: &mut Executor<'_>,
    id: &str,
    name: &str,
) -> anyhow::Result<Option<String>> {
    match node::link_state(ex.runner, name) {
        LinkState::Absent => return Ok(Some(format!("{name} does not exist"))),
        LinkState::Unknown(why) => bail!("could not query link {name}: {why}"),
        LinkState::Present(spec) => {
            let seq = ex.journal.intent(
                id,
                Undo::Link {
                    name: name.to_string(),
                    prior: Some(spec),
                },
            )?;
            let (tool, argv) = delete_command(name);
            ex.runner.check(tool, &argv)?;
            ex.journal.set_state(seq, EntryState::Done)?;
        }
    };
    Ok(None)
}

/// `Undo::Link`: the link recreated from its journaled spec (or deleted, if it did not exist).
pub(in crate::plan) fn undo_link(
    runner: &Runner,
    name: &str,
    prior: &Option<LinkSpec>,
) -> anyhow::Result<Option<String>> {
    Ok(match (node::link_state(runner, name), prior) {
        (LinkState::Unknown(why), _) => bail!("could not query link {name}: {why}"),
        (LinkState::Present(_), None) => {
            runner.check(Tool::Ip, &delete_command(name).1)?;
            Some(format!("link {name} deleted (it did not exist before)"))
        }
        (LinkState::Absent, Some(spec)) => {
            for cmd in recreate_link(spec) {
                runner.check(Tool::Ip, &cmd)?;
            }
            Some(format!("link {name} recreated"))
        }
        _ => None,
    })
}

/// `ip` argument vectors that recreate a deleted link as it was.
pub(in crate::plan) fn recreate_link(l: &LinkSpec) -> Vec<Vec<String>> {
    let mut add = args(&["link", "add", &l.name]);
    if let Some(a) = &l.address {
        add.extend(args(&["address", a]));
    }
    if let Some(m) = l.mtu {
        add.extend(args(&["mtu", &m.to_string()]));
    }
    match l.kind.as_deref() {
        Some("vxlan") => {
            add.extend(args(&[
                "type",
                "vxlan",
                "id",
                &l.vxlan_id.unwrap_or(1).to_string(),
            ]));
            if let Some(local) = &l.vxlan_local {
                add.extend(args(&["local", local]));
            }
            if let Some(dev) = &l.vxlan_dev {
                add.extend(args(&["dev", dev]));
            }
            add.extend(args(&[
                "dstport",
                &l.vxlan_port.unwrap_or(8472).to_string(),
                "nolearning",
            ]));
        }
        Some(kind) => add.extend(args(&["type", kind])),
        None => {}
    }
    let mut cmds = vec![add];
    for a in &l.addresses {
        cmds.push(args(&["addr", "add", a, "dev", &l.name]));
    }
    if l.up {
        cmds.push(args(&["link", "set", &l.name, "up"]));
    }
    cmds
}

/// `ip link del NAME`, as printed and as run.
pub fn delete_command(name: &str) -> (Tool, Vec<String>) {
    (Tool::Ip, args(&["link", "del", name]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recreates_flannel_vxlan_with_its_settings() {
        let l = LinkSpec {
            name: "flannel.1".into(),
            kind: Some("vxlan".into()),
            mtu: Some(1450),
            address: Some("aa:bb:cc:dd:ee:ff".into()),
            vxlan_id: Some(1),
            vxlan_local: Some("10.0.0.5".into()),
            vxlan_dev: Some("eth0".into()),
            vxlan_port: Some(8472),
            addresses: vec!["10.42.0.0/32".into()],
            up: true,
        };
        let cmds = recreate_link(&l);
        assert_eq!(
            cmds[0].join(" "),
            "link add flannel.1 address aa:bb:cc:dd:ee:ff mtu 1450 type vxlan id 1 local 10.0.0.5 dev eth0 dstport 8472 nolearning"
        );
        assert_eq!(cmds[1].join(" "), "addr add 10.42.0.0/32 dev flannel.1");
        assert_eq!(cmds[2].join(" "), "link set flannel.1 up");
    }
}
