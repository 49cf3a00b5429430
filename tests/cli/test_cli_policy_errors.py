"""``corral policy check`` on hostile files: exit 2, the file and line named, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CORRAL = str(Path(sys.executable).with_name("corral"))
CORPUS = Path(__file__).resolve().parents[1] / "data" / "policy_corpus"
EXPECTED: dict[str, list[str]] = json.loads((CORPUS / "expected.json").read_text())


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CORRAL, "policy", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


@pytest.mark.parametrize(
    "name",
    ["alias_bomb.yaml", "deep_flow_seq.yaml", "int_5000_digits.yaml", "markup_in_key.yaml", "not_utf8.yaml"],
)
def test_hostile_file_is_reported_without_a_traceback(name: str) -> None:
    r = check(CORPUS / name)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    for part in EXPECTED[name]:
        assert (f"{CORPUS / name}{part}" if part.startswith(":") else part) in r.stderr, r.stderr


def test_every_problem_is_listed_in_one_run(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("resources:\n  pids_max: !!int x\nprocesses:\n  outlive_call: !!bool maybe\nbogus: 1\n")
    r = check(f)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    for part in (":2: resources.pids_max: 'x' is not an integer", ":4: processes.outlive_call:", ":5: bogus"):
        assert f"{f}{part}" in r.stderr, r.stderr
