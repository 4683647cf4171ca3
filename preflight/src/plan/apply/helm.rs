//! Apply: the Cilium Helm release: `helm upgrade --install` and `helm uninstall`, each journaled with
//! the release, namespace and cluster-access flags so rollback undoes that release.

use anyhow::{Context, bail};

use super::args;
use crate::host::HostRoot;
use crate::plan::{
    exec::Executor,
    fsops,
    journal::{EntryState, Undo},
    runner::{Runner, Tool},
};

/// `Action::Helm`: `helm upgrade --install` of the release, its prior revision journaled.
pub(in crate::plan) fn helm(
    ex: &mut Executor<'_>,
    id: &str,
    release: &str,
    namespace: &str,
    version: &str,
    helm_args: &[String],
    values: &serde_json::Value,
) -> anyhow::Result<Option<String>> {
    let kube = kube_args_of(helm_args);
    let mut status_args = args(&["status", release, "-n", namespace, "-o", "json"]);
    status_args.extend(kube.clone());
    let status = ex.runner.run(Tool::Helm, &status_args)?;
    let values_sha256 = fsops::sha256_hex(&serde_json::to_vec(values)?);
    let prior_revision = if status.success() {
        let v: serde_json::Value =
            serde_json::from_str(&status.stdout).context("reading `helm status -o json`")?;
        // An earlier install applied exactly this, and nobody has changed the
        // release since (same revision, still deployed): `helm upgrade` again would
        // only make a new revision and roll the agents for nothing.
        let revision = v["version"].as_u64();
        if v["info"]["status"] == "deployed"
            && revision.is_some()
            && ex.journal.done().any(|e| match &e.undo {
                Undo::Helm {
                    release: r,
                    namespace: n,
                    applied: Some(a),
                    ..
                } => {
                    r == release
                        && n == namespace
                        && a.chart_version == *version
                        && a.args == *helm_args
                        && a.values_sha256 == values_sha256
                        && a.revision == revision
                }
                _ => false,
            })
        {
            return Ok(Some(format!(
                "release {namespace}/{release} is at the revision an earlier install \
                             made with Cilium {version} and these values"
            )));
        }
        let deployed =
            v["info"]["status"] == "deployed" && v["chart"]["metadata"]["version"] == version;
        if deployed {
            let mut get = args(&["get", "values", release, "-n", namespace, "-o", "json"]);
            get.extend(kube.clone());
            let got = ex.runner.run(Tool::Helm, &get)?;
            let want = serde_json::to_value(values)?;
            if got.success()
                && serde_json::from_str::<serde_json::Value>(&got.stdout).ok() == Some(want)
            {
                return Ok(Some(format!(
                    "release {release} {version} is deployed with these values"
                )));
            }
        }
        v["version"].as_u64()
    } else if status.stderr.contains("not found") {
        None
    } else {
        bail!("helm status {release} failed: {}", status.stderr.trim());
    };
    let undo = |applied| Undo::Helm {
        release: release.to_string(),
        namespace: namespace.to_string(),
        prior_revision,
        extra_args: kube.clone(),
        applied,
    };
    let seq = ex.journal.intent(id, undo(None))?;
    ex.runner.check(Tool::Helm, helm_args)?;
    // The revision this install made, for a re-run to recognise. Unknown when
    // status does not answer: the re-run then runs helm again, which is safe.
    let revision = ex
        .runner
        .run(Tool::Helm, &status_args)
        .ok()
        .filter(|o| o.success())
        .and_then(|o| serde_json::from_str::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v["version"].as_u64());
    let applied = crate::plan::journal::HelmApplied {
        chart_version: version.to_string(),
        args: helm_args.to_vec(),
        values_sha256,
        revision,
    };
    ex.journal.finish(seq, undo(Some(applied)))?;
    Ok(None)
}

/// `Action::HelmUninstall`: `helm uninstall` of the release, its chart version and values
/// (`helm get values`) journaled first so rollback can install it again.
pub(in crate::plan) fn helm_uninstall(
    ex: &mut Executor<'_>,

    id: &str,
    release: &str,
    namespace: &str,
    kube_args: &[String],
) -> anyhow::Result<Option<String>> {
    let mut status_args = args(&["status", release, "-n", namespace, "-o", "json"]);
    status_args.extend(kube_args.iter().cloned());
    let status = ex.runner.run(Tool::Helm, &status_args)?;
    if !status.success() {
        if status.stderr.contains("not found") {
            return Ok(Some(format!("no Helm release {namespace}/{release}")));
        }
        bail!("helm status {release} failed: {}", status.stderr.trim());
    }
    let v: serde_json::Value =
        serde_json::from_str(&status.stdout).context("reading `helm status -o json`")?;
    let chart_version = v["chart"]["metadata"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut get = args(&["get", "values", release, "-n", namespace, "-o", "yaml"]);
    get.extend(kube_args.iter().cloned());
    let values = ex.runner.check(Tool::Helm, &get)?.stdout;
    let seq = ex.journal.next_seq();
    let backup = ex
        .journal
        .backup_path(seq, &format!("{release}-values.yaml"))?;
    ex.host.write_new(&backup, values.as_bytes(), 0o600)?;
    let seq = ex.journal.intent(
        id,
        Undo::HelmUninstalled {
            release: release.to_string(),
            namespace: namespace.to_string(),
            chart_version,
            values: backup,
            extra_args: kube_args.to_vec(),
        },
    )?;
    let (tool, argv) = uninstall_command(release, namespace, kube_args);
    ex.runner.check(tool, &argv)?;
    ex.journal.set_state(seq, EntryState::Done)?;
    Ok(None)
}

/// `Undo::Helm`: `helm rollback` to the prior revision, or `helm uninstall` when there was none.
pub(in crate::plan) fn undo_helm(
    runner: &Runner,
    release: &str,
    namespace: &str,
    prior_revision: &Option<u64>,
    extra_args: &[String],
) -> anyhow::Result<Option<String>> {
    Ok({
        let mut status = args(&["status", release, "-n", namespace]);
        status.extend(extra_args.iter().cloned());
        let present = runner.run(Tool::Helm, &status)?.success();
        let mut a = match (prior_revision, present) {
            (None, false) => return Ok(None),
            (None, true) => args(&["uninstall", release, "-n", namespace, "--wait"]),
            (Some(rev), _) => args(&[
                "rollback",
                release,
                &rev.to_string(),
                "-n",
                namespace,
                "--wait",
            ]),
        };
        a.extend(extra_args.iter().cloned());
        runner.check(Tool::Helm, &a)?;
        Some(format!(
            "helm release {namespace}/{release} {}",
            if prior_revision.is_some() {
                "rolled back"
            } else {
                "uninstalled"
            }
        ))
    })
}

/// `Undo::HelmUninstalled`: the release installed again with its journaled chart version and
/// values; nothing to do when it is there.
pub(in crate::plan) fn undo_helm_uninstalled(
    host: &HostRoot,
    runner: &Runner,
    release: &str,
    namespace: &str,
    chart_version: &str,
    values: &str,
    extra_args: &[String],
) -> anyhow::Result<Option<String>> {
    Ok({
        let mut status = args(&["status", release, "-n", namespace]);
        status.extend(extra_args.iter().cloned());
        if runner.run(Tool::Helm, &status)?.success() {
            return Ok(None);
        }
        let mut a = args(&[
            "upgrade",
            "--install",
            release,
            "cilium",
            "--repo",
            crate::plan::gitops::CILIUM_HELM_REPO,
            "--namespace",
            namespace,
            "--values",
        ]);
        a.push(host.resolve(values)?.display().to_string());
        if !chart_version.is_empty() {
            a.extend(args(&["--version", chart_version]));
        }
        a.extend(extra_args.iter().cloned());
        runner.check(Tool::Helm, &a)?;
        Some(format!(
            "helm release {namespace}/{release} {chart_version} installed again with its values"
        ))
    })
}

/// The cluster-access flags of a helm command line (`--kubeconfig PATH`, `--kube-context
/// NAME`), for the status queries and the journaled undo of the same release.
pub(in crate::plan) fn kube_args_of(helm_args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for flag in ["--kubeconfig", "--kube-context"] {
        if let Some(w) = helm_args.windows(2).find(|w| w[0] == flag) {
            out.extend(w.iter().cloned());
        }
    }
    out
}

/// `helm uninstall RELEASE -n NS --wait` with the cluster-access flags: the fallback's step,
/// as printed and as run.
pub fn uninstall_command(
    release: &str,
    namespace: &str,
    kube_args: &[String],
) -> (Tool, Vec<String>) {
    let mut a = args(&["uninstall", release, "-n", namespace, "--wait"]);
    a.extend(kube_args.iter().cloned());
    (Tool::Helm, a)
}
