//! The `aggregate` and `job` subcommands: check the input, print the result, return the exit
//! code.
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser as _;

use crate::{
    cilium::{Target, TargetSpec},
    cmd::{AggregateArgs, Cli, Command, JobArgs, RunArgs},
    exit,
    fleet::{
        aggregate::{self, Aggregator},
        job::{self, JobSpec, ValuesFile},
        read,
    },
    report::Format,
};

pub fn aggregate(args: &AggregateArgs) -> anyhow::Result<u8> {
    let files = read::expand(&args.paths).context("listing the report paths")?;
    let shown = |f: &Path| crate::host::input::shown(f);
    let mut agg = Aggregator::default();
    let mut stats = read::ReadStats::default();
    for file in &files {
        // Each report is folded as soon as it is read; none is kept.
        read::read_path(file, &mut stats, &mut |item| agg.add(item))
            .with_context(|| format!("reading {}", shown(file)))?;
    }
    let verdict = agg.finish(stats);
    match args.format {
        Format::Text => crate::out!("{}", aggregate::render_text(&verdict)),
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(&verdict)?),
        Format::JsonLine => crate::outln!("{}", serde_json::to_string(&verdict)?),
        Format::Junit | Format::Markdown => {
            anyhow::bail!("`preflight aggregate` prints text, json or json-line")
        }
    }
    Ok(if verdict.nodes == 0 || !verdict.refused.is_empty() {
        if verdict.nodes == 0 {
            eprintln!(
                "preflight: error: no node reports in {} ({} lines read)",
                args.paths
                    .iter()
                    .map(|p| shown(p))
                    .collect::<Vec<_>>()
                    .join(", "),
                verdict.input_lines
            );
        } else {
            eprintln!(
                "preflight: error: {} reports refused; the cluster verdict is incomplete",
                verdict.refused.len()
            );
        }
        exit::ERROR
    } else if verdict.go {
        exit::GO
    } else {
        exit::NO_GO
    })
}

pub fn job(args: &JobArgs) -> anyhow::Result<u8> {
    // `run`'s target flags, given to `job` itself, go to the nodes as given (the values files
    // as shipped copies, below); flags after `--` follow them.
    let target = &args.target;
    let mut run_args = Vec::new();
    // The nodes judge the same release as this command: the flag, else (without --chart) the
    // newest release this preflight knows, written out so a node's preflight of another build
    // does not pick its own default.
    match (&target.cilium_version, &target.chart) {
        (Some(v), _) => run_args.extend(["--cilium-version".to_string(), v.to_string()]),
        (None, None) => run_args.extend([
            "--cilium-version".to_string(),
            crate::cilium::releases::BUILTIN
                .default_version()
                .to_string(),
        ]),
        (None, Some(_)) => {}
    }
    for set in &target.set {
        run_args.extend(["--set".to_string(), set.clone()]);
    }
    if let Some(chart) = &target.chart {
        run_args.extend(["--chart".to_string(), chart.display().to_string()]);
    }
    for need in &target.need {
        run_args.extend(["--need".to_string(), need.as_str().to_string()]);
    }
    if let Some(path) = &target.values_path {
        run_args.extend(["--values-path".to_string(), path.clone()]);
    }
    for id in &args.ignore {
        run_args.extend(["--ignore".to_string(), id.clone()]);
    }
    if args.no_canaries {
        run_args.push("--no-canaries".into());
    }
    run_args.extend(args.run_args.iter().cloned());
    let mut values: Vec<ValuesFile> = Vec::new();
    for path in &target.values {
        // Read and parsed here with the same bounds as on the nodes: a file the nodes would
        // refuse is refused now, naming it, not shipped to every node.
        let (text, _) = crate::cilium::values::load_file(path)?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let key = job::values_key(&file_name, &values);
        values.push(ValuesFile { key, text });
    }
    let total: usize = values.iter().map(|v| v.key.len() + v.text.len()).sum();
    if total > job::VALUES_MAX_BYTES {
        anyhow::bail!(
            "--values: {total} bytes in all; a ConfigMap holds at most {} (1 MiB)",
            job::VALUES_MAX_BYTES
        );
    }
    let mut spec = JobSpec {
        name: args.name.clone(),
        namespace: args.namespace.clone(),
        image: args
            .image
            .clone()
            .unwrap_or_else(|| format!("preflight:{}", env!("CARGO_PKG_VERSION"))),
        pause_image: args.pause_image.clone(),
        run_args,
        create_namespace: !args.no_namespace,
        values,
        cilium_image: None,
    };
    // The pod's command line, parsed here exactly as the nodes' preflight will parse it: a
    // flag `run` refuses would make every pod's init container exit 2, forever.
    let argv = std::iter::once("preflight".to_string()).chain(job::container_args(&spec));
    let run = match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Run(run),
            ..
        }) => run,
        Ok(_) => anyhow::bail!("the pod's command line is not a `preflight run`"),
        Err(e) => {
            eprint!(
                "preflight: error: `preflight run` on the nodes would refuse these flags \
                 ({}):\n{}",
                spec.run_args.join(" "),
                e.render()
            );
            return Ok(exit::ERROR);
        }
    };
    // `run` refuses unknown --ignore ids (given to job or after --): every pod would exit 2.
    crate::checks::validate_ignores(&run.ignore).map_err(anyhow::Error::msg)?;
    check_pod_paths(&run, &spec)?;
    // The target as the nodes will build it, from the local copies of the values files: bad
    // YAML (file:line:column), a bad --set or --cilium-version is refused here, not on every
    // node.
    let node_target = Target::build(&TargetSpec {
        cilium_version: run.target.cilium_version.clone(),
        value_files: target.values.clone(),
        sets: run.target.set.clone(),
        chart: None,
        need: run.target.need.clone(),
        values_path: run.target.values_path.clone(),
    })?;
    if let Some(note) = &node_target.version_note {
        eprintln!("preflight: warning: {note}");
    }
    // The datapath the nodes compile: the target's own, out of its Cilium image.
    spec.cilium_image = args.cilium_image.clone().or_else(|| {
        crate::compile::source::cilium_image(&node_target.install_version().to_string())
    });
    if spec.cilium_image.is_none() {
        eprintln!(
            "preflight: note: Cilium {} names no patch release, so there is no image to take \
             its datapath from: the nodes compile the built-in templates. Give \
             --cilium-version X.Y.Z or --cilium-image REF to compile the real datapath.",
            node_target.cilium_version
        );
    }
    let manifest = job::daemonset(&spec);
    let broken = job::volume_mount_errors(&manifest);
    anyhow::ensure!(
        broken.is_empty(),
        "the DaemonSet breaks the API server's volume rules: {}",
        broken.join("; ")
    );
    crate::out!("{}", job::render_yaml(&spec)?);
    Ok(exit::GO)
}

/// Paths after `--` are paths inside the pod, whose only files are the image's, the host's
/// under /host and the shipped values files: refuse the ones nothing would put there. The
/// datapath comes from the init container (--cilium-image), not from flags: the pod has no
/// writable cache to pull an image into, and every node should judge the same tree.
fn check_pod_paths(run: &RunArgs, spec: &JobSpec) -> anyhow::Result<()> {
    let tree = &run.tree;
    anyhow::ensure!(
        !tree.names_a_tree() && tree.clang.is_none() && !tree.clang_from_image,
        "--bpf-dir, --bpf-tar, --image, --image-archive, --clang and --clang-from-image are \
         not for the nodes: `preflight job` gives each pod the target's datapath and clang from \
         its Cilium image (--cilium-image REF, default quay.io/cilium/cilium:v<version>)"
    );
    let shipped: Vec<PathBuf> = spec
        .values
        .iter()
        .map(|v| Path::new(job::VALUES_DIR).join(&v.key))
        .collect();
    let on_node = |p: &Path| p.starts_with("/host") || shipped.iter().any(|s| s == p);
    for file in &run.target.values {
        anyhow::ensure!(
            on_node(file),
            "-f {}: that is a path in the pod, where nothing puts the file; ship it with \
             `preflight job --values {}`, or name a node file under /host",
            file.display(),
            file.display()
        );
    }
    if let Some(chart) = &run.target.chart {
        anyhow::ensure!(
            chart.starts_with("/host"),
            "--chart {}: that is a path in the pod; the image holds no chart: name one on the \
             nodes under /host",
            chart.display()
        );
    }
    if let Some(out) = &run.output {
        anyhow::bail!(
            "-o {}: the report must go to the pod's log, which is what `preflight aggregate` reads",
            out.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn the_pod_command_line_is_one_this_preflight_accepts() {
        let spec = JobSpec {
            name: "preflight".into(),
            namespace: "preflight".into(),
            image: "preflight:test".into(),
            pause_image: "registry.k8s.io/pause:3.10".into(),
            run_args: vec!["--need".into(), "tunnel-geneve".into()],
            create_namespace: true,
            values: Vec::new(),
            cilium_image: None,
        };
        let argv = std::iter::once("preflight".to_string()).chain(job::container_args(&spec));
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not a run")
        };
        assert!(run.host_kernel && run.exit_zero);
        assert_eq!(run.root.path, Path::new("/host"));
        assert_eq!(run.format, Format::JsonLine);
        assert_eq!(run.tree.bpf_dir, None);
        // With the target's Cilium image: the tree and clang the init container copied.
        let spec = JobSpec {
            cilium_image: Some("quay.io/cilium/cilium:v1.18.3".into()),
            ..spec
        };
        let argv = std::iter::once("preflight".to_string()).chain(job::container_args(&spec));
        let Command::Run(run) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not a run")
        };
        assert_eq!(
            run.tree.bpf_dir.as_deref(),
            Some(Path::new("/cilium-datapath/bpf"))
        );
        assert_eq!(
            run.tree.clang.as_deref(),
            Some(Path::new("/cilium-datapath/clang"))
        );
    }
}
