"""Corral installs into a trainer's environment: the core (``corral run``, Sandbox, Guard) works in a
fresh venv without any extra; pip's resolver finds one environment holding Corral (all extras) and
each torch-free framework at its tested version; and Corral's ranges admit what the torch frameworks
(verl, OpenRLHF, TRL, AReaL) require of the libraries they share with it (read from their wheels)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest
from framework_wheels import ROOT, pinned, wheel
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TORCH_FREE = {  # framework -> the version the adapter tests run against (the dev extra's pin)
    "gymnasium": "1.4.0",
    "skyrl-gym": "0.4.0",
    "gem-llm": "0.1.0",
    "verifiers": "0.4.0",
    "transformers": "5.23.0",  # TRL's torch-free part (tool schemas)
}


# The fresh venv must not see this checkout (a PYTHONPATH with src/ makes pip think Corral is installed).
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=CLEAN_ENV
    )
    assert proc.returncode == 0, f"{args}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def corral_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, ROOT)
    return next(out.glob("corral-*.whl"))


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    venv = tmp_path_factory.mktemp("venv") / "v"
    _run(sys.executable, "-m", "venv", venv)
    yield venv


def test_core_works_without_extras(corral_wheel: Path, fresh_venv: Path, tmp_path: Path) -> None:
    py = fresh_venv / "bin" / "python"
    _run(py, "-m", "pip", "install", "-q", corral_wheel)
    for heavy in ("duckdb", "pyarrow", "stix2", "fastapi", "uvicorn", "ray", "httpx"):
        probe = subprocess.run([str(py), "-c", f"import {heavy}"], capture_output=True, env=CLEAN_ENV)
        assert probe.returncode != 0, f"{heavy} was installed with the core"
    env_home = f"CORRAL_HOME={tmp_path / 'home'}"
    out = _run("env", env_home, fresh_venv / "bin" / "corral", "run", "--json", "--", "echo", "hi")
    assert json.loads(out.stdout)["stdout"] == "hi\n"
    script = (
        "import asyncio\n"
        "from corral import Guard, Sandbox, Policy\n"
        "with Sandbox(Policy.default(), store=None) as sb: assert sb.run('echo a').stdout == 'a\\n'\n"
        "with Guard(store=None) as g:\n"
        "    with g.episode() as ep: assert ep.run('echo b').observation == 'b\\n'\n"
        "    async def main():\n"
        "        async with g.async_episode() as ep: return (await ep.run('echo c')).observation\n"
        "    assert asyncio.run(main()) == 'c\\n'\n"
        "print('core ok')\n"
    )
    assert "core ok" in _run("env", env_home, py, "-c", script).stdout
    # A command that needs an extra says which one.
    proc = subprocess.run(
        ["env", env_home, str(fresh_venv / "bin" / "corral"), "demo", "--episodes", "1"],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
    )
    assert proc.returncode != 0 and "pip install 'corral[correlate]'" in proc.stderr


@pytest.fixture(scope="module")
def resolution(corral_wheel: Path, fresh_venv: Path) -> dict[str, str]:
    """pip's resolver, in a fresh venv: one environment with Corral (every extra) and all the torch-free
    frameworks at their tested versions (a joint solution holds Corral beside each one alone)."""
    pins = [f"{name}=={version}" for name, version in sorted(TORCH_FREE.items())]
    proc = _run(
        fresh_venv / "bin" / "python", "-m", "pip", "install", "--dry-run", "-q", "--ignore-installed",
        "--report", "-", f"{corral_wheel}[all]", *pins,
    )  # fmt: skip
    report = json.loads(proc.stdout)["install"]
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in report}


@pytest.mark.parametrize("framework", sorted(TORCH_FREE))
def test_resolves_next_to_framework(resolution: dict[str, str], framework: str) -> None:
    version = TORCH_FREE[framework]
    assert f"{framework}=={version}" in PYPROJECT["project"]["optional-dependencies"]["dev"]
    assert resolution[canonicalize_name(framework)] == version and "corral" in resolution


def _corral_requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for name in ("correlate", "service", "ray", "gpu", "otel", "gymnasium"):
        reqs += [Requirement(r) for r in extras[name]]
    return reqs


def _overlap(a: SpecifierSet, b: SpecifierSet) -> bool:
    """Some version satisfies both (candidates: every version either names, and the next patch)."""
    cands = set()
    for spec in list(a) + list(b):
        v = Version(spec.version.replace(".*", ".0"))
        cands |= {v, Version(f"{v.major}.{v.minor}.{v.micro + 1}")}
    return any(a.contains(v, prereleases=True) and b.contains(v, prereleases=True) for v in cands) or not (
        a and b
    )


@pytest.mark.parametrize("framework", sorted(pinned()))
def test_ranges_admit_torch_frameworks(framework: str) -> None:
    with zipfile.ZipFile(wheel(framework)) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        requires = Parser().parsestr(z.read(meta).decode()).get_all("Requires-Dist") or []
    theirs = {}
    for line in requires:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            theirs[canonicalize_name(req.name)] = req.specifier
    shared = [r for r in _corral_requirements() if canonicalize_name(r.name) in theirs]
    clashes = [f"{r} vs {framework}'s {theirs[canonicalize_name(r.name)]}" for r in shared
               if not _overlap(r.specifier, theirs[canonicalize_name(r.name)])]  # fmt: skip
    assert clashes == []
