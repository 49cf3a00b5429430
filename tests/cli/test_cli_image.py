"""``corral image pull|ls|rm`` run as a user would, in a subprocess, against real OCI layouts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from images_support import busybox_rootfs, oci_layout

CORRAL = str(Path(sys.executable).with_name("corral"))


def corral(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CORRAL, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ), cwd=cwd
    )


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cli-image")
    oci_layout(base / "layout", busybox_rootfs(base / "rootfs"), tag="v1")
    return base / "layout"


def test_pull_ls_rm(tmp_path: Path, layout: Path) -> None:
    cache = str(tmp_path / "cache")
    r = corral("image", "pull", "--cache", cache, "--json", f"oci:{layout}:v1")
    assert r.returncode == 0, r.stderr
    pulled = json.loads(r.stdout)
    assert pulled["ref"] == f"oci:{layout}:v1" and pulled["digest"].startswith("sha256:")
    assert pulled["working_dir"] == "/app" and pulled["env"]["GREETING"] == "hello from the image"
    assert Path(pulled["rootfs"], "bin", "busybox").is_file()

    r = corral("image", "ls", "--cache", cache, "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(row["digest"], row["refs"], row["in_use"]) for row in rows] == [
        (pulled["digest"], [f"oci:{layout}:v1"], False)
    ]
    r = corral("image", "ls", "--cache", cache)
    assert r.returncode == 0 and pulled["digest"][:19] in r.stdout and "MiB" in r.stdout

    r = corral("image", "rm", "--cache", cache, f"oci:{layout}:v1")
    assert r.returncode == 0, r.stderr
    assert pulled["digest"] in r.stdout and not Path(pulled["rootfs"]).exists()
    assert corral("image", "ls", "--cache", cache, "--json").stdout == ""


def test_relative_paths_are_taken_from_the_current_directory(tmp_path: Path, layout: Path) -> None:
    cache = str(tmp_path / "cache")
    r = corral("image", "pull", "--cache", cache, f"oci:{layout.name}:v1", cwd=layout.parent)
    assert r.returncode == 0, r.stderr
    assert f"oci:{layout}:v1: sha256:" in r.stdout and "(manifest sha256:" in r.stdout


def test_cache_comes_from_the_policy(tmp_path: Path, layout: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(f"environment:\n  image_cache: {tmp_path / 'from-policy'}\n")
    r = corral("image", "pull", "--policy", str(policy), f"oci:{layout}:v1")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "from-policy" / "images").is_dir()


def test_errors_exit_2_with_the_reference_and_no_traceback(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    cases = [
        (["image", "pull", "--cache", cache, "nonsense"], "'nonsense': unknown image reference"),
        (["image", "pull", "--cache", cache, f"oci:{tmp_path}/none:1"], "is not an OCI image layout"),
        (["image", "rm", "--cache", cache, f"oci:{tmp_path}/none:1"], "not in the image cache"),
    ]
    for args, message in cases:
        r = corral(*args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("environment:\n  insecure_registries: [registry.local:5000]\n")
    r = corral("image", "ls", "--policy", str(bad_policy))
    assert r.returncode == 2 and "environment.insecure_registries[0]" in r.stderr
