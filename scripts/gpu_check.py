#!/usr/bin/env python3
"""Corral's GPU confinement on a real NVIDIA machine: one summary line per check.

Run as root with the project's venv on a machine with an NVIDIA GPU and its driver
(no CUDA toolkit needed)::

    .venv/bin/python scripts/gpu_check.py [--device 0] [--budget-s 3] [--kernel-s 6] [--only NAME]

Checks (``--only`` picks some):

  default_policy_has_no_gpu   a default-policy sandbox sees no /dev/nvidia* and cannot run the kernel
  granted_gpu_is_attributed   a sandbox granted the GPU runs the kernel; its GPU time is the call's
  budget_stops_busy_kernel    a kernel running past its call's GPU budget is stopped and alerted
  granted_call_sees_one_gpu   a granted call can neither see nor use another GPU

The kernel is a PTX busy loop (``spin``: read %clock64 until N cycles passed) JIT-compiled by
the driver and launched through the CUDA driver API with ctypes. ``gpu_check.py kernel`` runs
it on its own, with the standard library only, which is how the sandboxed calls run it (the
script copies itself into each sandbox and runs it with the host's /usr/bin/python3); it prints
one JSON line and exits 0 only if the kernel ran.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKS = (
    "default_policy_has_no_gpu",
    "granted_gpu_is_attributed",
    "budget_stops_busy_kernel",
    "granted_call_sees_one_gpu",
)

# One thread per block spins until `spin_cycles` SM clock cycles have passed, then stores how many.
PTX = r"""
.version 7.0
.target sm_52
.address_size 64

.visible .entry spin(
    .param .u64 spin_cycles,
    .param .u64 out
)
{
    .reg .pred %p<2>;
    .reg .b64 %rd<8>;

    ld.param.u64 %rd1, [spin_cycles];
    ld.param.u64 %rd2, [out];
    cvta.to.global.u64 %rd3, %rd2;
    mov.u64 %rd4, %clock64;
$L_spin:
    mov.u64 %rd5, %clock64;
    sub.s64 %rd6, %rd5, %rd4;
    setp.lt.u64 %p1, %rd6, %rd1;
    @%p1 bra $L_spin;
    st.global.u64 [%rd3], %rd6;
    ret;
}
"""

_CU_DEVICE_ATTRIBUTE_CLOCK_RATE = 13  # kHz
_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16
_LAUNCH_S = 0.2  # one launch's length: the loop can be stopped between launches, and NVML sees steady use
_DEFAULT_CLOCK_KHZ = 1_500_000


def spin_cycles(seconds: float, clock_khz: int) -> int:
    """Clock cycles a launch spins for to last ``seconds`` at ``clock_khz`` (1.5 GHz when unknown)."""
    return max(1, int(seconds * (clock_khz if clock_khz > 0 else _DEFAULT_CLOCK_KHZ) * 1000))


# -- the kernel runner (standard library only: it runs inside sandboxes) ---------------------------


class CudaError(Exception):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.message = message


class _Cuda:
    def __init__(self) -> None:
        try:
            self.lib = ctypes.CDLL("libcuda.so.1")
        except OSError as exc:
            raise CudaError("load", str(exc)) from None

    def __call__(self, stage: str, name: str, *args: Any) -> None:
        code = getattr(self.lib, name)(*args)
        if code != 0:
            raise CudaError(stage, self.error_name(code))

    def error_name(self, code: int) -> str:
        out = ctypes.c_char_p()
        try:
            if self.lib.cuGetErrorName(code, ctypes.byref(out)) == 0 and out.value:
                return f"{out.value.decode()} ({code})"
        except AttributeError:
            pass
        return f"CUDA error {code}"


def run_kernel(seconds: float, device: int, list_only: bool) -> dict[str, Any]:
    cu = _Cuda()
    cu("cuInit", "cuInit", 0)
    count = ctypes.c_int()
    cu("count", "cuDeviceGetCount", ctypes.byref(count))
    result: dict[str, Any] = {"ok": True, "device_count": count.value}
    if list_only:
        return result
    dev = ctypes.c_int()
    cu("device", "cuDeviceGet", ctypes.byref(dev), device)
    name = ctypes.create_string_buffer(256)
    cu("device", "cuDeviceGetName", name, 256, dev)
    clock, sms = ctypes.c_int(), ctypes.c_int()
    cu("device", "cuDeviceGetAttribute", ctypes.byref(clock), _CU_DEVICE_ATTRIBUTE_CLOCK_RATE, dev)
    cu("device", "cuDeviceGetAttribute", ctypes.byref(sms), _CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev)
    ctx = ctypes.c_void_p()
    cu("context", "cuCtxCreate_v2", ctypes.byref(ctx), 0, dev)
    module, fn = ctypes.c_void_p(), ctypes.c_void_p()
    cu("module", "cuModuleLoadData", ctypes.byref(module), ctypes.c_char_p(PTX.encode() + b"\0"))
    cu("module", "cuModuleGetFunction", ctypes.byref(fn), module, b"spin")
    out = ctypes.c_uint64()
    cu("memory", "cuMemAlloc_v2", ctypes.byref(out), 8)
    cycles = ctypes.c_uint64(spin_cycles(_LAUNCH_S, clock.value))
    arg_out = ctypes.c_uint64(out.value)
    params = (ctypes.c_void_p * 2)(ctypes.addressof(cycles), ctypes.addressof(arg_out))
    start = time.monotonic()
    launches = 0
    while time.monotonic() - start < seconds:
        blocks = max(1, sms.value)
        cu("launch", "cuLaunchKernel", fn, blocks, 1, 1, 1, 1, 1, 0, None, params, None)
        cu("launch", "cuCtxSynchronize")
        launches += 1
    spun = ctypes.c_uint64()
    cu("memory", "cuMemcpyDtoH_v2", ctypes.byref(spun), out, 8)
    result.update(
        device=device,
        name=name.value.decode(errors="replace"),
        seconds=round(time.monotonic() - start, 3),
        launches=launches,
        last_spin_cycles=spun.value,
    )
    return result


def kernel_main(args: argparse.Namespace) -> int:
    try:
        out = run_kernel(args.seconds, args.device, args.list)
    except CudaError as exc:
        print(json.dumps({"ok": False, "stage": exc.stage, "error": exc.message}), flush=True)
        return 2
    print(json.dumps(out), flush=True)
    return 0


# -- the checks (on the host, with corral) ---------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    name: str
    ok: bool | None  # None: could not be checked here
    detail: str


def summary_line(o: Outcome) -> str:
    status = "PASS" if o.ok else ("SKIP" if o.ok is None else "FAIL")
    return f"{status} {o.name}: {o.detail}"


def kernel_report(stdout: str) -> dict[str, Any]:
    """The kernel runner's JSON line in a call's output (the last line that parses)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return {"ok": False, "stage": "output", "error": f"no report in the call's output: {stdout[-200:]!r}"}


def nvidia_nodes(ls_output: str) -> list[str]:
    return sorted(n for n in ls_output.split() if n.startswith("nvidia"))


def judge_default(nodes: list[str], report: dict[str, Any], exit_code: int | None) -> Outcome:
    name = "default_policy_has_no_gpu"
    if nodes:
        return Outcome(name, False, f"the sandbox sees {nodes}")
    if report.get("ok") or exit_code == 0:
        return Outcome(name, False, f"the kernel ran without a grant: {report}")
    return Outcome(
        name, True, f"no /dev/nvidia*; the kernel failed ({report.get('stage')}: {report.get('error')})"
    )


def judge_attributed(
    report: dict[str, Any], gpu_time_s: float | None, kernel_s: float, own: int, elsewhere: int
) -> Outcome:
    name = "granted_gpu_is_attributed"
    if not report.get("ok"):
        return Outcome(name, False, f"the kernel did not run in the granted sandbox: {report}")
    if not own:
        return Outcome(name, False, "NVML saw no GPU process of the call")
    if elsewhere:
        return Outcome(
            name, False, f"{elsewhere} GPU samples of the kernel were attributed to no or another call"
        )
    if gpu_time_s is None or gpu_time_s < 0.25 * kernel_s:
        return Outcome(name, False, f"gpu_time_s={gpu_time_s} for a {kernel_s:g}s busy kernel")
    return Outcome(
        name,
        True,
        f"{report.get('name')}: {report.get('launches')} launches in {report.get('seconds')}s; "
        f"gpu_time_s={gpu_time_s:.2f}; {own} NVML samples, all under the call",
    )


def judge_budget(
    stop_reason: str | None, duration_s: float, rules: Sequence[str], budget_s: float, limit_s: float
) -> Outcome:
    name = "budget_stops_busy_kernel"
    if stop_reason != "gpu_budget":
        return Outcome(
            name, False, f"stop_reason={stop_reason!r} after {duration_s:.1f}s, alerts {list(rules)}"
        )
    if "corral.monitor.gpu_budget" not in rules:
        return Outcome(name, False, f"stopped but not alerted (alerts {list(rules)})")
    if duration_s > limit_s:
        return Outcome(name, False, f"stopped only after {duration_s:.1f}s for a {budget_s:g}s budget")
    return Outcome(name, True, f"stopped after {duration_s:.1f}s (budget {budget_s:g} GPU-s) and alerted")


def judge_one_gpu(
    nodes: list[str],
    expected_nodes: list[str],
    listed: dict[str, Any],
    other: dict[str, Any] | None,
    proc_gpus: list[str],
    expected_bus: list[str],
    host_count: int,
) -> Outcome:
    name = "granted_call_sees_one_gpu"
    if nodes != expected_nodes:
        return Outcome(name, False, f"device nodes {nodes}, expected {expected_nodes}")
    if listed.get("device_count") != 1:
        return Outcome(name, False, f"CUDA inside counts {listed.get('device_count')} devices: {listed}")
    if sorted(proc_gpus) != sorted(expected_bus):
        return Outcome(name, False, f"/proc/driver/nvidia/gpus shows {proc_gpus}, expected {expected_bus}")
    if other is not None and other.get("ok"):
        return Outcome(name, False, f"the kernel ran on device ordinal 1: {other}")
    note = "" if host_count > 1 else " (this machine has one GPU: only its own could be checked)"
    return Outcome(name, True, f"nodes {nodes}; CUDA sees 1 of {host_count}; other ordinals refused{note}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="mode")
    k = sub.add_parser("kernel", help="run the PTX busy loop here (standard library only)")
    k.add_argument("--seconds", type=float, default=5.0)
    k.add_argument("--device", type=int, default=0, help="CUDA ordinal (as this process sees devices)")
    k.add_argument("--list", action="store_true", help="only count the devices CUDA sees")
    p.add_argument("--device", type=int, default=0, help="GPU index to grant (nvidia-smi numbering)")
    p.add_argument("--budget-s", type=float, default=3.0, help="GPU budget of the budget check")
    p.add_argument("--kernel-s", type=float, default=6.0, help="busy time of the attribution check")
    p.add_argument("--interval-s", type=float, default=0.5, help="NVML poll interval")
    p.add_argument("--only", action="append", choices=CHECKS, help="run only this check (repeatable)")
    args = p.parse_args(list(argv))
    if args.mode is None and (args.budget_s <= 0 or args.kernel_s <= 0 or args.interval_s <= 0):
        p.error("--budget-s, --kernel-s and --interval-s must be positive")
    return args


def _checks(args: argparse.Namespace) -> list[Outcome]:  # pragma: no cover - needs a GPU machine
    import os

    from corral import Harness, Policy, TraceContext
    from corral.events import Event, GpuUsage
    from corral.monitor import NvmlSource
    from corral.sandbox import discover_gpus

    me = Path(__file__).read_bytes()
    kernel = "/usr/bin/python3 /workspace/gpu_check.py kernel"
    base = Policy.default().with_overrides(
        resources={"wall_timeout_s": 180, "memory_max_bytes": 8 << 30, "pids_max": 512},
        monitoring={"gpu_interval_s": args.interval_s},
    )
    out: list[Outcome] = []
    if os.geteuid() != 0:
        return [Outcome(c, False, "run as root") for c in CHECKS]
    nvml = NvmlSource.open()
    inv = discover_gpus(identities=nvml.identities())
    wanted = args.only or list(CHECKS)

    def sandboxed(policy: Policy, events: list[Event]) -> Any:
        return Harness(policy, store=None, sinks=[events.append], gpu_inventory=inv)

    if "default_policy_has_no_gpu" in wanted:
        events: list[Event] = []
        h = sandboxed(base, events)
        try:
            with h.sandbox() as sb:
                sb.write_file("gpu_check.py", me)
                ls = sb.run("ls -A /dev").stdout
                r = sb.run(f"{kernel} --seconds 1")
            out.append(judge_default(nvidia_nodes(ls), kernel_report(r.stdout), r.exit_code))
        finally:
            h.close()
    rest = [c for c in wanted if c != "default_policy_has_no_gpu"]
    if not rest:
        return out
    if nvml.status != "ok" or not inv.gpus:
        why = nvml.status if nvml.status != "ok" else inv.problem
        return out + [Outcome(c, False, f"no GPU to check with: {why}") for c in rest]
    target = next((g for g in inv.gpus if g.index == args.device), None)
    if target is None:
        return out + [Outcome(c, False, f"no GPU index {args.device}: {inv.describe()}") for c in rest]
    granted = base.with_overrides(gpu={"devices": [args.device]})
    if "granted_gpu_is_attributed" in wanted:
        events = []
        h = sandboxed(granted, events)
        try:
            with h.sandbox() as sb:
                sb.write_file("gpu_check.py", me)
                r = sb.run(f"{kernel} --seconds {args.kernel_s}", TraceContext(run_id="gpu-check"))
            seen = [(e.data.ProcessId, e.ctx.tool_call_id) for e in events if isinstance(e.data, GpuUsage)]
            mine = {pid for pid, call in seen if call == r.tool_call_id}
            own = len([1 for _pid, call in seen if call == r.tool_call_id])
            elsewhere = len([1 for pid, call in seen if pid in mine and call != r.tool_call_id])
            out.append(judge_attributed(kernel_report(r.stdout), r.gpu_time_s, args.kernel_s, own, elsewhere))
        finally:
            h.close()
    if "budget_stops_busy_kernel" in wanted:
        events = []
        h = sandboxed(granted.with_overrides(gpu={"compute_budget_s": args.budget_s}), events)
        try:
            with h.sandbox() as sb:
                sb.write_file("gpu_check.py", me)
                r = sb.run(f"{kernel} --seconds 120")
            limit = args.budget_s * 2 + 4 * args.interval_s + 15  # CUDA start-up, poll resolution
            rules = [a.rule_id for a in r.alerts]
            out.append(judge_budget(r.stop_reason, r.duration_s, rules, args.budget_s, limit))
        finally:
            h.close()
    if "granted_call_sees_one_gpu" in wanted:
        events = []
        h = sandboxed(granted, events)
        try:
            with h.sandbox() as sb:
                sb.write_file("gpu_check.py", me)
                nodes = nvidia_nodes(sb.run("ls -A /dev /dev/nvidia-caps 2>/dev/null").stdout)
                # without the variables that name its GPU: only the device nodes keep the others away
                bare = f"env -u CUDA_VISIBLE_DEVICES -u NVIDIA_VISIBLE_DEVICES {kernel}"
                listed = kernel_report(sb.run(f"{bare} --list").stdout)
                other = kernel_report(sb.run(f"{bare} --seconds 1 --device 1").stdout)
                proc = sb.run("ls /proc/driver/nvidia/gpus").stdout.split()
            expected = sorted(["nvidia-uvm", "nvidiactl", target.node])
            out.append(judge_one_gpu(nodes, expected, listed, other, proc, [target.bus_id], len(inv.gpus)))
        finally:
            h.close()
    return out


def main(
    argv: Sequence[str] | None = None, run: Callable[[argparse.Namespace], list[Outcome]] = _checks
) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.mode == "kernel":
        return kernel_main(args)
    outcomes = run(args)
    for o in outcomes:
        print(summary_line(o), flush=True)
    return 0 if outcomes and all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
