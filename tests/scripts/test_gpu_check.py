"""scripts/gpu_check.py without a GPU: its arguments, PTX, verdicts and summary lines, the kernel
runner failing cleanly where there is no driver, and the one check that needs no GPU, for real."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


gc = _load()


def test_arguments() -> None:
    a = gc.parse_args([])
    assert (a.mode, a.device, a.budget_s, a.kernel_s, a.interval_s, a.only) == (None, 0, 3.0, 6.0, 0.5, None)
    a = gc.parse_args(
        ["--device", "2", "--only", "budget_stops_busy_kernel", "--only", "granted_call_sees_one_gpu"]
    )
    assert a.device == 2 and a.only == ["budget_stops_busy_kernel", "granted_call_sees_one_gpu"]
    k = gc.parse_args(["kernel", "--seconds", "1.5", "--device", "1"])
    assert (k.mode, k.seconds, k.device, k.list) == ("kernel", 1.5, 1, False)
    assert gc.parse_args(["kernel", "--list"]).list is True
    for bad in (["--only", "nope"], ["--budget-s", "0"], ["--kernel-s", "-1"], ["kernel", "--seconds", "x"]):
        with pytest.raises(SystemExit):
            gc.parse_args(bad)


def test_ptx_is_well_formed() -> None:
    ptx = gc.PTX
    assert (
        re.search(r"^\.version \d+\.\d+$", ptx, re.M) and ".target sm_52" in ptx and ".address_size 64" in ptx
    )
    assert re.search(r"\.visible \.entry spin\(\s*\.param \.u64 spin_cycles,\s*\.param \.u64 out\s*\)", ptx)
    body = ptx[ptx.index("{") : ptx.rindex("}") + 1]
    assert body.count("{") == body.count("}") == 1
    declared = {k: int(n) for k, n in re.findall(r"\.reg \.\w+ %(\w+)<(\d+)>;", body)}
    assert declared == {"p": 2, "rd": 8}
    for kind, idx in re.findall(r"%(p|rd)(\d+)", body):
        assert int(idx) < declared[kind], f"%{kind}{idx} is not declared"
    labels = set(re.findall(r"^(\$\w+):", body, re.M))
    assert labels == {"$L_spin"} and set(re.findall(r"bra (\$\w+);", body)) <= labels
    statements = [
        s.strip() for s in body.strip("{}").split(";") if s.strip() and not s.strip().startswith(".reg")
    ]
    assert statements[-1] == "ret" and all(s.split()[0] in _OPCODES for s in statements), statements
    assert "%clock64" in body and "[spin_cycles]" in body and "[out]" in body


_OPCODES = {
    "ld.param.u64",
    "cvta.to.global.u64",
    "mov.u64",
    "sub.s64",
    "setp.lt.u64",
    "@%p1",
    "st.global.u64",
    "ret",
}
_OPCODES |= {"$L_spin:"}


def test_spin_cycles() -> None:
    assert gc.spin_cycles(0.2, 1_980_000) == 396_000_000  # H200: 1.98 GHz boost clock
    assert gc.spin_cycles(1.0, 0) == 1_500_000_000  # unknown clock: 1.5 GHz
    assert gc.spin_cycles(0.0, 1000) == 1


@pytest.mark.parametrize(
    ("outcome", "line"),
    [
        (("a", True, "fine"), "PASS a: fine"),
        (("b", False, "broken"), "FAIL b: broken"),
        (("c", None, "not here"), "SKIP c: not here"),
    ],
)
def test_summary_line(outcome: tuple[str, bool | None, str], line: str) -> None:
    assert gc.summary_line(gc.Outcome(*outcome)) == line


def test_kernel_report_takes_the_last_json_line() -> None:
    assert gc.kernel_report('noise\n{"ok": true, "device_count": 1}\n')["device_count"] == 1
    assert gc.kernel_report("{broken\n")["stage"] == "output"


@pytest.mark.parametrize(
    ("nodes", "report", "code", "ok"),
    [
        ([], {"ok": False, "stage": "load", "error": "libcuda.so.1: cannot open"}, 2, True),
        ([], {"ok": False, "stage": "cuInit", "error": "CUDA_ERROR_NO_DEVICE (100)"}, 2, True),
        (["nvidia0"], {"ok": False, "stage": "cuInit", "error": "x"}, 2, False),
        ([], {"ok": True, "device_count": 1}, 0, False),
    ],
)
def test_judge_default(nodes: list[str], report: dict[str, object], code: int, ok: bool) -> None:
    assert gc.judge_default(nodes, report, code).ok is ok


@pytest.mark.parametrize(
    ("report", "gpu_time", "own", "elsewhere", "ok"),
    [
        ({"ok": True, "name": "NVIDIA H200", "launches": 30, "seconds": 6.0}, 5.2, 10, 0, True),
        ({"ok": True}, 0.5, 10, 0, False),  # far too little GPU time for 6 s of spinning
        ({"ok": True}, 5.2, 0, 0, False),  # NVML never saw it
        ({"ok": True}, 5.2, 10, 2, False),  # some samples went to another call
        ({"ok": False, "stage": "launch"}, 5.2, 10, 0, False),
    ],
)
def test_judge_attributed(
    report: dict[str, object], gpu_time: float, own: int, elsewhere: int, ok: bool
) -> None:
    assert gc.judge_attributed(report, gpu_time, 6.0, own, elsewhere).ok is ok


@pytest.mark.parametrize(
    ("stop", "duration", "rules", "ok"),
    [
        ("gpu_budget", 5.0, ["corral.monitor.gpu_budget"], True),
        ("gpu_budget", 40.0, ["corral.monitor.gpu_budget"], False),  # too late
        ("gpu_budget", 5.0, [], False),  # not alerted
        (None, 120.0, [], False),
        ("timeout", 180.0, [], False),
    ],
)
def test_judge_budget(stop: str | None, duration: float, rules: list[str], ok: bool) -> None:
    assert gc.judge_budget(stop, duration, rules, 3.0, 23.0).ok is ok


def test_judge_one_gpu() -> None:
    nodes = ["nvidia-uvm", "nvidia3", "nvidiactl"]
    bus = ["0000:41:00.0"]
    refused = {"ok": False, "stage": "device", "error": "CUDA_ERROR_INVALID_DEVICE (101)"}
    good = gc.judge_one_gpu(nodes, nodes, {"ok": True, "device_count": 1}, refused, bus, bus, 8)
    assert good.ok and "1 of 8" in good.detail
    single = gc.judge_one_gpu(nodes, nodes, {"ok": True, "device_count": 1}, refused, bus, bus, 1)
    assert single.ok and "one GPU" in single.detail
    assert not gc.judge_one_gpu([*nodes, "nvidia4"], nodes, {"device_count": 1}, refused, bus, bus, 8).ok
    assert not gc.judge_one_gpu(nodes, nodes, {"device_count": 2}, refused, bus, bus, 8).ok
    assert not gc.judge_one_gpu(nodes, nodes, {"device_count": 1}, {"ok": True}, bus, bus, 8).ok
    assert not gc.judge_one_gpu(nodes, nodes, {"device_count": 1}, refused, [*bus, "0000:07:00.0"], bus, 8).ok


def test_main_prints_one_line_per_check_and_fails_on_any_failure(capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = [gc.Outcome("one", True, "ok"), gc.Outcome("two", False, "no")]
    assert gc.main([], run=lambda _a: outcomes) == 1
    assert capsys.readouterr().out == "PASS one: ok\nFAIL two: no\n"
    assert gc.main([], run=lambda _a: outcomes[:1]) == 0
    assert gc.main([], run=lambda _a: []) == 1  # nothing checked is not a pass


def test_kernel_runner_reports_a_missing_driver_cleanly() -> None:
    proc = subprocess.run(
        ["/usr/bin/python3", str(SCRIPT), "kernel", "--seconds", "0.2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if report["ok"]:  # a machine with a GPU and its driver: the kernel ran
        assert proc.returncode == 0 and report["launches"] >= 1
        return
    assert proc.returncode == 2 and report["stage"] in ("load", "cuInit") and report["error"]


def test_the_default_policy_check_runs_here() -> None:
    outcomes = gc._checks(gc.parse_args(["--only", "default_policy_has_no_gpu"]))
    assert [(o.name, o.ok) for o in outcomes] == [("default_policy_has_no_gpu", True)], outcomes
    assert "no /dev/nvidia*" in outcomes[0].detail
