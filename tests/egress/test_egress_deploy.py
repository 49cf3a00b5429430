"""deploy/: the manifests validate for every supported Kubernetes release, say what the docs say, and
the image's Corral layer builds from this repository with no registry (buildah, offline)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from export_support import validate_k8s
from typer.testing import CliRunner

from corral.cli import app
from corral.errors import InputError
from corral.integrations.service._server import socket_group_id, unix_listener
from corral.policy import Policy

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def _docs() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_for_kubernetes_1_30_to_1_37(path: Path) -> None:
    assert validate_k8s(path.read_text())


def test_daemonset_has_what_a_gpu_node_needs() -> None:
    docs = _docs()
    ns, sa, ds = docs["Namespace"], docs["ServiceAccount"], docs["DaemonSet"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert sa["automountServiceAccountToken"] is False
    pod = ds["spec"]["template"]["spec"]
    assert (
        pod["serviceAccountName"] == sa["metadata"]["name"] and pod["automountServiceAccountToken"] is False
    )
    assert pod["priorityClassName"] == docs["PriorityClass"]["metadata"]["name"]
    assert pod["hostPID"] is True and pod["hostNetwork"] is False  # NVML attribution; NetworkPolicy applies
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] and pod["runtimeClassName"] == "nvidia"
    assert pod["terminationGracePeriodSeconds"] >= 60
    (c,) = pod["containers"]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    start = c["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] >= 60  # import + pool warm-up fit
    assert all(c[p]["timeoutSeconds"] >= 5 for p in ("startupProbe", "readinessProbe", "livenessProbe"))
    args = c["args"]
    token_dir = args[args.index("--token-file") + 1].rsplit("/", 1)[0]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols[mounts[token_dir]["name"]]["secret"]["secretName"] == docs["Secret"]["metadata"]["name"]
    policy_dir = args[args.index("--policy") + 1].rsplit("/", 1)[0]
    assert vols[mounts[policy_dir]["name"]]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]


def test_every_daemonset_flag_exists() -> None:
    (c,) = _docs()["DaemonSet"]["spec"]["template"]["spec"]["containers"]
    help_text = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200).stdout
    assert c["args"][0] == "serve"
    for flag in [a for a in c["args"] if a.startswith("--")]:
        assert flag in help_text, flag


def test_configmap_is_the_node_policy() -> None:
    text = (DEPLOY / "policy.yaml").read_text()
    assert _docs()["ConfigMap"]["data"]["policy.yaml"] == text
    assert Policy.from_yaml(text).network.mode == "allowlist"


def test_trainer_mounts_only_the_socket_directory_read_only() -> None:
    ds, trainer = _docs()["DaemonSet"], _docs()["Pod"]
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    sock_dir = args[args.index("--socket") + 1].rsplit("/", 1)[0]
    (vol,) = trainer["spec"]["volumes"]
    assert vol["hostPath"]["path"] == sock_dir and vol["hostPath"]["type"] == "Directory"
    (mount,) = trainer["spec"]["containers"][0]["volumeMounts"]
    assert mount["readOnly"] is True and mount["mountPath"] == sock_dir
    gid = re.search(r"groupadd --system --gid (\d+) (\w+)", (DEPLOY / "Dockerfile").read_text())
    assert gid is not None and args[args.index("--socket-group") + 1] == gid.group(2)
    assert int(gid.group(1)) in trainer["spec"]["securityContext"]["supplementalGroups"]


def test_missing_socket_group_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such group on this host"):
        socket_group_id("corral-no-such-group")
    assert socket_group_id("2450") == 2450
    r = CliRunner().invoke(
        app, ["serve", "--socket", str(tmp_path / "s.sock"), "--socket-group", "corral-nope"]
    )
    assert r.exit_code == 2 and "no such group" in r.output and not (tmp_path / "s.sock").exists()
    sock = unix_listener(str(tmp_path / "g.sock"), 0o660, str(os.getgid()))
    try:
        assert (tmp_path / "g.sock").stat().st_gid == os.getgid()
    finally:
        sock.close()


@pytest.fixture
def buildah() -> Iterator[list[str]]:
    exe = shutil.which("buildah")
    assert exe is not None, "buildah is needed (./dev installs it)"
    root = tempfile.mkdtemp(prefix="corral-buildah-")
    cmd = [exe, "--root", f"{root}/root", "--runroot", f"{root}/run", "--storage-driver", "vfs"]
    try:
        yield cmd
    finally:
        subprocess.run([*cmd, "rm", "--all"], capture_output=True)
        subprocess.run([*cmd, "rmi", "--all", "--force"], capture_output=True)
        subprocess.run(["umount", "-R", f"{root}/root"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_image_layer_builds_from_the_repository_without_a_registry(buildah: list[str]) -> None:
    """The Dockerfile's ``layout`` stage (everything Corral adds to the base) builds offline; the tree
    it produces imports and finds its policy and rules (what ``pip install /src`` packages)."""
    r = subprocess.run(
        [*buildah, "bud", "--isolation", "chroot", "--target", "layout", "-f", "deploy/Dockerfile",
         "-t", "localhost/corral-layout:test", "."],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    ctr = subprocess.run([*buildah, "from", "localhost/corral-layout:test"], capture_output=True, text=True)
    mnt = subprocess.run(
        [*buildah, "mount", ctr.stdout.strip()], capture_output=True, text=True
    ).stdout.strip()
    try:
        assert Path(mnt, "etc/corral/policy.yaml").read_text() == (DEPLOY / "policy.yaml").read_text()
        assert Path(mnt, "src/pyproject.toml").read_bytes() == (ROOT / "pyproject.toml").read_bytes()
        code = (
            "import corral, sys; from corral.policy import Policy; from corral.detect import Detector;"
            "assert corral.__file__.startswith(sys.argv[1]); Policy.default();"
            "Policy.load(sys.argv[2]); print(Detector.builtin().load_report.loaded)"
        )
        env = {**os.environ, "PYTHONPATH": f"{mnt}/src/src"}
        out = subprocess.run(
            [sys.executable, "-c", code, f"{mnt}/src/src", f"{mnt}/etc/corral/policy.yaml"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0 and int(out.stdout) > 50, out.stderr
    finally:
        subprocess.run([*buildah, "umount", "--all"], capture_output=True)
