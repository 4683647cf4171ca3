//! The Kubernetes API for the cluster steps, through kube-rs (k8s-openapi types; the
//! `CiliumNodeConfig` as a dynamic object, since no Rust type for Cilium's CRDs is kept here).
//!
//! This is the boundary that cannot run on a development or CI machine: there is no API server.
//! `tests/cluster.rs` serves a stand-in on localhost that keeps objects and answers the exact
//! REST calls made here (nodes, pods, evictions with PodDisruptionBudgets, DaemonSets, the
//! `CiliumNodeConfig`). The API and helm (and k3s's service, which cannot run here either) are
//! the only stand-ins of those tests: node stages run the real binary with the real `ip` and
//! iptables tools in a network namespace per node (docs/cluster-migration.md).
use std::time::{Duration, Instant};

use ::kube::{
    Api, Client,
    api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::{ApiResource, DynamicObject, GroupVersionKind},
};
use anyhow::{Context, bail};
use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Node, Pod},
};
use serde_json::{Value, json};

use super::runbook::Access;

/// A blocking client: each call runs on a private current-thread runtime.
pub struct Kube {
    rt: tokio::runtime::Runtime,
    client: Client,
    pub namespace: String,
    /// How long a wait may take (`--wait-timeout`).
    pub timeout: Duration,
    /// How often a wait asks again (PREFLIGHT_CLUSTER_POLL_MS in tests).
    pub poll: Duration,
}

fn is_code(e: &::kube::Error, code: u16) -> bool {
    matches!(e, ::kube::Error::Api(s) if s.code == code)
}

impl Kube {
    /// Connect as kubectl would: --kubeconfig (else KUBECONFIG, ~/.kube/config, the in-cluster
    /// service account), --context (else the current context).
    pub fn connect(access: &Access, namespace: &str, timeout: Duration) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the Kubernetes client's runtime")?;
        let options = KubeConfigOptions {
            context: access.context.clone(),
            ..Default::default()
        };
        let client = rt.block_on(async {
            let config = match &access.kubeconfig {
                Some(path) => {
                    let kc = Kubeconfig::read_from(path)
                        .with_context(|| format!("--kubeconfig {}", path.display()))?;
                    ::kube::Config::from_custom_kubeconfig(kc, &options)
                        .await
                        .with_context(|| format!("--kubeconfig {}", path.display()))?
                }
                None if access.context.is_some() => ::kube::Config::from_kubeconfig(&options)
                    .await
                    .context("reading the kubeconfig")?,
                None => ::kube::Config::infer()
                    .await
                    .context("finding a kubeconfig (give --kubeconfig)")?,
            };
            let mut config = config;
            // kube retries 429/503/504 by itself (15 times, backing off up to 1000 s). A 429 on
            // an eviction is a PodDisruptionBudget saying "not now": the drain retries it on its
            // own schedule, bounded by --wait-timeout, and says which budget held it.
            config.default_retry = false;
            Client::try_from(config).context("building the Kubernetes client")
        })?;
        let poll = std::env::var("PREFLIGHT_CLUSTER_POLL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(2));
        Ok(Self {
            rt,
            client,
            namespace: namespace.into(),
            timeout,
            poll,
        })
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }
    fn pods_all(&self) -> Api<Pod> {
        Api::all(self.client.clone())
    }
    fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }
    fn node_configs(&self, api_version: &str) -> Api<DynamicObject> {
        let (group, version) = api_version.split_once('/').unwrap_or(("cilium.io", "v2"));
        let gvk = GroupVersionKind::gvk(group, version, "CiliumNodeConfig");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "ciliumnodeconfigs");
        Api::namespaced_with(self.client.clone(), &self.namespace, &ar)
    }

    /// Asks the API server who it is: the run stops before any change when it does not answer.
    pub fn ping(&self) -> anyhow::Result<String> {
        let v = self
            .rt
            .block_on(self.client.apiserver_version())
            .context("the API server does not answer")?;
        Ok(format!("{}.{}", v.major, v.minor))
    }

    pub fn node(&self, name: &str) -> anyhow::Result<Node> {
        self.rt
            .block_on(self.nodes().get(name))
            .with_context(|| format!("getting node {name}"))
    }

    pub fn unschedulable(&self, name: &str) -> anyhow::Result<bool> {
        Ok(self
            .node(name)?
            .spec
            .and_then(|s| s.unschedulable)
            .unwrap_or(false))
    }

    pub fn set_unschedulable(&self, name: &str, value: bool) -> anyhow::Result<()> {
        let patch = json!({"spec": {"unschedulable": value}});
        self.rt
            .block_on(
                self.nodes()
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .with_context(|| format!("patching node {name} spec.unschedulable={value}"))?;
        Ok(())
    }

    pub fn label(&self, name: &str, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .node(name)?
            .metadata
            .labels
            .and_then(|l| l.get(key).cloned()))
    }

    /// Set (Some) or remove (None) a node label.
    pub fn set_label(&self, name: &str, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        let patch = json!({"metadata": {"labels": {key: value}}});
        self.rt
            .block_on(
                self.nodes()
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .with_context(|| format!("labelling node {name} {key}={value:?}"))?;
        Ok(())
    }

    fn pods_on(&self, node: &str, labels: Option<&str>) -> anyhow::Result<Vec<Pod>> {
        let mut lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
        if let Some(l) = labels {
            lp = lp.labels(l);
        }
        Ok(self
            .rt
            .block_on(self.pods_all().list(&lp))
            .with_context(|| format!("listing the pods on {node}"))?
            .items)
    }

    /// Evict every pod on the node but DaemonSet and mirror pods. An eviction a
    /// PodDisruptionBudget refuses (429) is retried until the budget allows it or the wait ends;
    /// then the evicted pods must be gone. Returns the pods evicted.
    pub fn drain(&self, node: &str) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + self.timeout;
        let movable = |p: &Pod| -> bool {
            let daemon = p
                .metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|r| r.kind == "DaemonSet"));
            let mirror = p
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
            let done = p
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|ph| ph == "Succeeded" || ph == "Failed");
            !daemon && !mirror && !done
        };
        let mut evicted = Vec::new();
        let mut refused: Vec<String> = Vec::new();
        loop {
            let pending: Vec<Pod> = self
                .pods_on(node, None)?
                .into_iter()
                .filter(movable)
                .collect();
            if pending.is_empty() {
                return Ok(evicted);
            }
            refused.clear();
            for p in &pending {
                let ns = p.metadata.namespace.clone().unwrap_or_default();
                let name = p.metadata.name.clone().unwrap_or_default();
                let id = format!("{ns}/{name}");
                if p.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                match self
                    .rt
                    .block_on(self.pods(&ns).evict(&name, &EvictParams::default()))
                {
                    Ok(_) => {
                        if !evicted.contains(&id) {
                            evicted.push(id);
                        }
                    }
                    Err(e) if is_code(&e, 404) => {}
                    Err(e) if is_code(&e, 429) => refused.push(format!("{id}: {e}")),
                    Err(e) => return Err(e).with_context(|| format!("evicting {id}")),
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "draining {node}: still there after {} s: {}",
                    self.timeout.as_secs(),
                    if refused.is_empty() {
                        pending
                            .iter()
                            .map(|p| p.metadata.name.clone().unwrap_or_default())
                            .collect::<Vec<_>>()
                            .join(", ")
                    } else {
                        format!("refused by a PodDisruptionBudget: {}", refused.join("; "))
                    }
                );
            }
            std::thread::sleep(self.poll);
        }
    }

    fn ready(p: &Pod) -> bool {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    }

    /// Delete the node's Cilium pod and wait for its replacement to be Ready.
    pub fn restart_agent(&self, node: &str) -> anyhow::Result<()> {
        let old: Vec<String> = self
            .pods_on(node, Some("k8s-app=cilium"))?
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        for name in &old {
            match self.rt.block_on(
                self.pods(&self.namespace)
                    .delete(name, &DeleteParams::default()),
            ) {
                Ok(_) => {}
                Err(e) if is_code(&e, 404) => {}
                Err(e) => return Err(e).with_context(|| format!("deleting pod {name}")),
            }
        }
        self.wait(&format!("the Cilium pod on {node} Ready"), || {
            Ok(self.pods_on(node, Some("k8s-app=cilium"))?.iter().any(|p| {
                !old.contains(p.metadata.name.as_ref().unwrap_or(&String::new()))
                    && p.metadata.deletion_timestamp.is_none()
                    && Self::ready(p)
            }))
        })
    }

    /// Restart the node's Cilium pod when it has one (a rollback after Helm's uninstall has
    /// none). Whether it did.
    pub fn restart_agent_if_present(&self, node: &str) -> anyhow::Result<bool> {
        if self.pods_on(node, Some("k8s-app=cilium"))?.is_empty() {
            return Ok(false);
        }
        self.restart_agent(node).map(|()| true)
    }

    /// Delete the pods left on the node that are not hostNetwork (after a drain: DaemonSet
    /// pods); their controllers recreate them.
    pub fn recreate_pods(&self, node: &str) -> anyhow::Result<Vec<String>> {
        let mut done = Vec::new();
        for p in self.pods_on(node, None)? {
            let host_net = p
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false);
            if host_net {
                continue;
            }
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let name = p.metadata.name.clone().unwrap_or_default();
            match self
                .rt
                .block_on(self.pods(&ns).delete(&name, &DeleteParams::default()))
            {
                Ok(_) => done.push(format!("{ns}/{name}")),
                Err(e) if is_code(&e, 404) => {}
                Err(e) => return Err(e).with_context(|| format!("deleting pod {ns}/{name}")),
            }
        }
        Ok(done)
    }

    fn node_ready(&self, node: &str) -> anyhow::Result<bool> {
        Ok(self
            .node(node)?
            .status
            .and_then(|s| s.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")))
    }

    pub fn wait_node_ready(&self, node: &str) -> anyhow::Result<()> {
        self.wait(&format!("node {node} Ready"), || self.node_ready(node))
    }

    /// The node Ready, its Cilium pod Ready, and every pod on it that is not hostNetwork
    /// addressed from `pod_cidr`.
    pub fn validate(&self, node: &str, pod_cidr: &str) -> anyhow::Result<()> {
        self.wait(&format!("{node} validated"), || {
            if !self.node_ready(node)? {
                return Ok(false);
            }
            let pods = self.pods_on(node, None)?;
            let agent_ready = pods.iter().any(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.get("k8s-app").map(String::as_str) == Some("cilium"))
                    && Self::ready(p)
            });
            if !agent_ready {
                return Ok(false);
            }
            for p in &pods {
                if p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false) {
                    continue;
                }
                let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
                match ip {
                    Some(ip) if super::plan::overlaps(&format!("{ip}/32"), pod_cidr) => {}
                    Some(ip) => bail!(
                        "pod {}/{} on {node} has {ip}, outside Cilium's pod CIDR {pod_cidr}: it is not on Cilium's network",
                        p.metadata.namespace.clone().unwrap_or_default(),
                        p.metadata.name.clone().unwrap_or_default()
                    ),
                    None => return Ok(false),
                }
            }
            Ok(true)
        })
    }

    fn daemonset(&self, name: &str) -> anyhow::Result<DaemonSet> {
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &self.namespace);
        self.rt
            .block_on(api.get(name))
            .with_context(|| format!("getting daemonset {}/{name}", self.namespace))
    }

    /// Rolled out: the controller saw the latest spec and every scheduled pod is updated and
    /// ready (what `kubectl rollout status` waits for).
    pub fn wait_daemonset(&self, name: &str) -> anyhow::Result<()> {
        self.wait(&format!("daemonset/{name} rolled out"), || {
            let ds = self.daemonset(name)?;
            let generation = ds.metadata.generation.unwrap_or(0);
            let Some(s) = ds.status else { return Ok(false) };
            Ok(s.observed_generation.unwrap_or(0) >= generation
                && s.desired_number_scheduled > 0
                && s.updated_number_scheduled.unwrap_or(0) == s.desired_number_scheduled
                && s.number_ready == s.desired_number_scheduled)
        })
    }

    /// `kubectl rollout restart`: a new pod template annotation, then wait.
    pub fn restart_daemonset(&self, name: &str, at: &str) -> anyhow::Result<()> {
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &self.namespace);
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": at}}}}});
        self.rt
            .block_on(api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)))
            .with_context(|| format!("restarting daemonset {}/{name}", self.namespace))?;
        self.wait_daemonset(name)
    }

    /// The `CiliumNodeConfig` as it is now (None: absent).
    pub fn get_node_config(&self, api_version: &str, name: &str) -> anyhow::Result<Option<Value>> {
        match self
            .rt
            .block_on(self.node_configs(api_version).get_opt(name))
        {
            Ok(o) => Ok(o.map(|o| serde_json::to_value(o).unwrap_or(Value::Null))),
            Err(e) => Err(e).with_context(|| format!("getting CiliumNodeConfig {name}")),
        }
    }

    /// Server-side apply of the `CiliumNodeConfig` (field manager `preflight`).
    pub fn apply_node_config(&self, manifest: &Value) -> anyhow::Result<()> {
        let api_version = manifest["apiVersion"].as_str().unwrap_or("cilium.io/v2");
        let name = manifest["metadata"]["name"]
            .as_str()
            .unwrap_or(super::NODE_CONFIG_NAME);
        self.rt
            .block_on(self.node_configs(api_version).patch(
                name,
                &PatchParams::apply("preflight").force(),
                &Patch::Apply(manifest),
            ))
            .with_context(|| format!("applying CiliumNodeConfig {name}"))?;
        Ok(())
    }

    pub fn delete_node_config(&self, api_version: &str, name: &str) -> anyhow::Result<()> {
        match self.rt.block_on(
            self.node_configs(api_version)
                .delete(name, &DeleteParams::default()),
        ) {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, 404) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting CiliumNodeConfig {name}")),
        }
    }

    /// Ask `done` every poll interval until it says yes, it fails, or the wait times out.
    fn wait(
        &self,
        what: &str,
        mut done: impl FnMut() -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if done()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {} s waiting for {what}",
                    self.timeout.as_secs()
                );
            }
            std::thread::sleep(self.poll);
        }
    }
}
