#!/usr/bin/env python3
"""Writes fixtures/reports/kubectl-logs-prefixed.txt from the three real reports next to it:
what `kubectl logs -l app.kubernetes.io/name=preflight -c preflight --prefix` prints for a
three-node cluster (the 6.18 host as worker-1, the Debian 6.1 and 6.12 guests as worker-2 and
worker-3), each report on one line (`--format json-line`) after a log line, and one kubectl
error line. Run it after re-capturing the reports (docs/fleet.md)."""
import json
import pathlib

reports = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "reports"
nodes = [
    ("worker-1", "dev-host-6.18.json"),
    ("worker-2", "vm-debian12-6.1.json"),
    ("worker-3", "vm-debian12-6.12.json"),
]
lines = []
for i, (node, source) in enumerate(nodes):
    report = json.loads((reports / source).read_text())
    report["node"]["hostname"] = node
    prefix = f"[pod/preflight-{node}/preflight]"
    lines.append(
        f"{prefix} 2026-11-22T04:00:0{i}Z WARN preflight::probe: "
        "helper probe {prog: sched_cls} took 40 ms"
    )
    lines.append(f"{prefix} {json.dumps(report, separators=(',', ':'), ensure_ascii=False)}")
lines.append("error: unable to retrieve container logs for containerd://0123abcd")
(reports / "kubectl-logs-prefixed.txt").write_text("\n".join(lines) + "\n")
