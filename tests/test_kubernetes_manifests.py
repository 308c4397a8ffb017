"""The Kubernetes manifests in ``deploy/kubernetes``: valid, and consistent
with the server they run.

The manifests are checked against the API schema of a pinned Kubernetes
version, their flags against fastsrv's own command-line parser, their
timings against the drain sequence in ``fastsrv/server.py``, and finally by
running ``fastsrv run`` with exactly the container's arguments and stopping
it the way the kubelet does.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import time
from typing import Any, Optional

import kubernetes_validate
import pytest
import yaml

from conftest import ROOT, ProcessServer, RawClient
from fastsrv.cli import _parser

MANIFEST_DIR = os.path.join(ROOT, "deploy", "kubernetes")
DEPLOYMENT_FILE = os.path.join(MANIFEST_DIR, "deployment.yaml")

# the schema the manifests are validated against (one bundled by kubernetes-validate)
KUBERNETES_VERSION = "1.34.0"

# server.py's fixed waits after the exit wait time and the hooks: 1 s for
# cancelled handlers' finally blocks, 1 s for the listener to close, and
# run_on_uvloop's clean-up (1 s for leftover tasks, 1 s for async generators)
FIXED_WAITS = 1 + 1 + 2
# what terminationGracePeriodSeconds must keep above the worst-case stop
MIN_MARGIN = 2
# time left, inside the shutdown delay, for a readiness change to reach the
# proxies (kubelet -> API server -> EndpointSlice -> kube-proxy, ingress)
MIN_PROPAGATION = 2


def _load(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def manifest_files() -> list[str]:
    return sorted(os.path.join(MANIFEST_DIR, name) for name in os.listdir(MANIFEST_DIR)
                  if name.endswith((".yaml", ".yml")))


def all_documents() -> list[tuple[str, dict[str, Any]]]:
    return [(os.path.basename(path), doc) for path in manifest_files() for doc in _load(path)]


def _one(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in all_documents() if doc.get("kind") == kind]
    assert len(found) == 1, f"expected exactly one {kind} in {MANIFEST_DIR}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return _one("Deployment")


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    return _one("Service")


@pytest.fixture(scope="module")
def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec["containers"]
    assert len(containers) == 1, f"expected one container per pod, found {len(containers)}"
    return containers[0]


@pytest.fixture(scope="module")
def flags(container: dict[str, Any]) -> argparse.Namespace:
    return _parser().parse_args(container["args"])


def _with_flag(args: list[str], flag: str, value: str) -> list[str]:
    """``args`` with the value after ``flag`` replaced."""
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


def _without_flag(args: list[str], flag: str) -> list[str]:
    """``args`` without ``flag`` and its value."""
    i = args.index(flag)
    return args[:i] + args[i + 2:]


def _subparser(name: str) -> argparse.ArgumentParser:
    """The ``fastsrv NAME`` subcommand's parser."""
    for action in _parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise AssertionError("fastsrv's parser has no subcommands")


def _resolve_port(port: Any, container: dict[str, Any]) -> Optional[int]:
    """A probe's or Service's port (a number or a port name) as a number."""
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def _probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {kind: container[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            if kind in container}


# ---- the manifests are valid Kubernetes objects ----

@pytest.mark.parametrize("name,doc", all_documents(),
                         ids=[f"{name}:{doc.get('kind')}" for name, doc in all_documents()])
def test_every_manifest_document_validates_strictly_against_kubernetes_schema(name, doc):
    try:
        version = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.absolute_path)
        pytest.fail(f"{name}: {doc.get('kind')} is invalid for Kubernetes {exc.version} at {path}: "
                    f"{exc.message}")
    assert version == "1.34", f"validated against {version}, not the pinned {KUBERNETES_VERSION}"


def test_the_manifests_hold_one_deployment_and_one_service():
    kinds = sorted(doc.get("kind") for _, doc in all_documents())
    assert kinds == ["Deployment", "Service"], f"documents in {MANIFEST_DIR}: {kinds}"


# ---- the container runs a real fastsrv command line ----

def test_container_args_parse_with_the_fastsrv_cli(container):
    assert container.get("command") == ["fastsrv"], \
        f"the container must exec fastsrv itself (PID 1 gets SIGTERM), not {container.get('command')}"
    args = container["args"]
    assert all(isinstance(a, str) for a in args), f"every arg must be a YAML string: {args}"
    try:
        parsed = _parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"`fastsrv {' '.join(args)}` is not a valid fastsrv command line "
                    "(see the argparse error above)")
    assert parsed.command == "run" and parsed.app == "fastsrv.demo:app", parsed
    # argparse accepts an unambiguous prefix of a flag; the manifest spells each in full
    run_options = _subparser("run")._option_string_actions
    unknown = [a for a in args if a.startswith("-") and a not in run_options]
    assert not unknown, f"not `fastsrv run` flags as spelled: {unknown}"


def test_one_server_process_per_pod(container, flags):
    assert "--workers" not in container["args"], "scale with replicas, one server process per pod"
    assert getattr(flags, "workers", None) in (None, 1), flags


def test_sigterm_starts_a_graceful_drain(flags):
    assert flags.signal_policy == "graceful", \
        f"--signal-policy {flags.signal_policy}: SIGTERM must drain, not stop at once"


def test_the_server_listens_on_all_interfaces(flags):
    assert flags.host == "0.0.0.0", f"--host {flags.host}: the kubelet and the Service reach the pod IP"


# ---- probes, ports and selectors agree with the flags ----

def test_probe_paths_are_the_health_flags(container, flags):
    assert flags.readiness_path and flags.liveness_path, "both --readiness-path and --liveness-path are set"
    probes = _probes(container)
    assert probes["readinessProbe"]["httpGet"]["path"] == flags.readiness_path, \
        f"readinessProbe path != --readiness-path {flags.readiness_path}"
    assert probes["livenessProbe"]["httpGet"]["path"] == flags.liveness_path, \
        f"livenessProbe path != --liveness-path {flags.liveness_path}"
    if "startupProbe" in probes:
        assert probes["startupProbe"]["httpGet"]["path"] == flags.liveness_path, \
            f"startupProbe path != --liveness-path {flags.liveness_path}"


def test_probe_ports_and_service_target_port_are_the_served_port(container, service, flags):
    ports = [p["containerPort"] for p in container["ports"]]
    assert ports == [flags.port], f"container ports {ports} != [--port {flags.port}]"
    for kind, probe in _probes(container).items():
        port = probe["httpGet"]["port"]
        assert _resolve_port(port, container) == flags.port, \
            f"{kind} port {port!r} does not resolve to --port {flags.port}"
    for p in service["spec"]["ports"]:
        target = p.get("targetPort", p["port"])
        assert _resolve_port(target, container) == flags.port, \
            f"Service targetPort {target!r} does not resolve to --port {flags.port}"


def test_selectors_match_the_pod_template_labels(deployment, service):
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]
    assert set(selector) == {"matchLabels"}, f"use matchLabels only: {selector}"
    for owner, wanted in (("Deployment", selector["matchLabels"]), ("Service", service["spec"]["selector"])):
        assert wanted, f"the {owner} selector is empty"
        missing = {k: v for k, v in wanted.items() if labels.get(k) != v}
        assert not missing, f"the {owner} selector {wanted} does not select the pod labels {labels}"


# ---- timings: the drain fits inside the pod's termination ----

def test_grace_period_covers_the_worst_case_stop(pod_spec, flags):
    worst = flags.shutdown_delay + flags.exit_wait_time + flags.hook_budget + FIXED_WAITS
    grace = pod_spec.get("terminationGracePeriodSeconds", 30)
    assert grace >= worst + MIN_MARGIN, (
        f"terminationGracePeriodSeconds {grace} < {flags.shutdown_delay:g} (delay) + "
        f"{flags.exit_wait_time:g} (exit wait) + {flags.hook_budget:g} (hook budget) + "
        f"{FIXED_WAITS} (fixed waits) + {MIN_MARGIN} (margin)")


def test_grace_period_comment_shows_the_real_numbers(pod_spec, flags):
    with open(DEPLOYMENT_FILE, encoding="utf-8") as f:
        text = f.read()

    def number(pattern: str) -> float:
        m = re.search(pattern, text)
        assert m, f"no comment matching {pattern!r} in {DEPLOYMENT_FILE}"
        return float(m.group(1))

    assert number(r"#\s+(\d+) s\s+--shutdown-delay") == flags.shutdown_delay
    assert number(r"# \+ (\d+) s\s+--exit-wait-time") == flags.exit_wait_time
    assert number(r"# \+ (\d+) s\s+--hook-budget") == flags.hook_budget
    assert number(r"# \+ (\d+) s\s+fixed waits") == FIXED_WAITS
    m = re.search(r"# = (\d+) s, \+ (\d+) s margin = (\d+) s", text)
    assert m, "no '= WORST s, + MARGIN s margin = GRACE s' line in the comment"
    worst, margin, grace = map(int, m.groups())
    assert worst == flags.shutdown_delay + flags.exit_wait_time + flags.hook_budget + FIXED_WAITS, \
        f"the comment's worst case {worst} s is not the sum of its terms"
    assert worst + margin == grace == pod_spec["terminationGracePeriodSeconds"], \
        f"the comment's {worst} + {margin} = {grace} is not terminationGracePeriodSeconds " \
        f"{pod_spec['terminationGracePeriodSeconds']}"


def test_readiness_reports_not_ready_within_the_shutdown_delay(container, flags):
    probe = container["readinessProbe"]
    period, failures = probe.get("periodSeconds", 10), probe.get("failureThreshold", 3)
    assert period * failures + MIN_PROPAGATION <= flags.shutdown_delay, (
        f"readiness periodSeconds {period} x failureThreshold {failures} + {MIN_PROPAGATION} s "
        f"to propagate > --shutdown-delay {flags.shutdown_delay:g}: the listener would close "
        "while proxies still route here")


def test_readiness_comment_shows_the_real_numbers(container, flags):
    with open(DEPLOYMENT_FILE, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"(\d+) s periodSeconds x (\d+) failureThreshold = (\d+) s <= (\d+) s --shutdown-delay",
                  text)
    assert m, "no 'P s periodSeconds x F failureThreshold = T s <= D s --shutdown-delay' comment"
    period, failures, total, delay = map(int, m.groups())
    probe = container["readinessProbe"]
    assert (period, failures) == (probe["periodSeconds"], probe["failureThreshold"]), \
        f"comment says {period} x {failures}, the probe has {probe}"
    assert total == period * failures and delay == flags.shutdown_delay, \
        f"comment says {period} x {failures} = {total} <= {delay}, " \
        f"--shutdown-delay is {flags.shutdown_delay:g}"


# ---- the rest of the pod spec ----

def test_rolling_update_keeps_every_replica_serving(deployment):
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate", strategy
    assert strategy["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}, strategy


def test_container_runs_unprivileged_on_a_read_only_root(pod_spec, container):
    pod_sc, sc = pod_spec.get("securityContext", {}), container.get("securityContext", {})
    assert sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot"), "runAsNonRoot is not set"
    assert sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true"
    assert sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false"
    assert sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities are not all dropped"


def test_resources_request_cpu_and_memory_and_limit_memory(container):
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]), resources
    assert "memory" in resources.get("limits", {}), f"no memory limit: {resources}"


# ---- the manifest's command line, run and stopped as the kubelet does ----

def _get(port: int, path: str):
    client = RawClient(port, timeout=5)
    try:
        client.send(f"GET {path} HTTP/1.1\r\nHost: pod\r\n\r\n".encode())
        return client.read_response()
    finally:
        client.close()


def test_manifest_command_line_serves_probes_and_drains_on_sigterm(container, pod_spec, flags):
    """``fastsrv run`` with the container's args (on 127.0.0.1 and a free
    port): the probes answer, SIGTERM turns readiness to 503 for the shutdown
    delay while requests are still served, and the process exits 0 well inside
    ``terminationGracePeriodSeconds``."""
    grace = pod_spec["terminationGracePeriodSeconds"]
    assert flags.shutdown_delay <= 8, "keep this test short: a shutdown delay of at most 8 s"
    args = container["args"]
    assert args[0] == "run"
    # ProcessServer adds "run" before the args and "--port FREE_PORT" after them
    server = ProcessServer(_without_flag(_with_flag(args[1:], "--host", "127.0.0.1"), "--port"))
    port = server.port
    try:
        server.wait_ready()
        assert _get(port, flags.readiness_path).status == 200, server.log()
        assert _get(port, flags.liveness_path).status == 200, server.log()

        sent = time.monotonic()
        server.signal(signal.SIGTERM)
        # readiness turns 503 at once, and stays 503 until the delay ends,
        # while the app and liveness still answer
        checks = []
        for at in (0.2, flags.shutdown_delay / 2, flags.shutdown_delay - 1.0):
            time.sleep(max(0.0, sent + at - time.monotonic()))
            checks.append((round(time.monotonic() - sent, 2), _get(port, flags.readiness_path).status,
                           _get(port, flags.liveness_path).status, _get(port, "/").status))
        assert all(c[1:] == (503, 200, 200) for c in checks), \
            f"(s after SIGTERM, readiness, liveness, /) during the delay: {checks}\n{server.log()}"
        assert checks[-1][0] < flags.shutdown_delay, f"the checks ran too late to prove anything: {checks}"

        try:
            status = server.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {grace} s (terminationGracePeriodSeconds) after SIGTERM:\n"
                        f"{server.log()}")
        took = time.monotonic() - sent
        assert status == 0, f"exit status {status}, not a clean drain:\n{server.log()}"
        assert flags.shutdown_delay <= took < grace, \
            f"exited {took:.2f} s after SIGTERM (delay {flags.shutdown_delay:g} s, grace {grace} s)"
    finally:
        server.kill()
