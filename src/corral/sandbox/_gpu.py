"""The node's NVIDIA GPUs, and what one sandbox is granted of them (reads of /dev and /proc only).

Discovery needs no NVML: the driver publishes each GPU in
``/proc/driver/nvidia/gpus/<bus>/information`` (its minor number, UUID and model) and each MIG
instance in ``/proc/driver/nvidia/capabilities/gpu<minor>/mig/gi<G>[/ci<C>]/access`` (the minor of
its capability node under ``/dev/nvidia-caps``). Indices follow PCI bus order, as nvidia-smi and
NVML number GPUs; what only NVML knows (MIG instance UUIDs) comes in as ``identities``.

A grant is the exact set of device nodes a sandbox gets (``/dev/nvidia<minor>``, ``nvidiactl``,
``nvidia-uvm`` and, for a MIG instance, its two capability nodes; never the MIG ``config`` or
``monitor`` capabilities), the ``CUDA_VISIBLE_DEVICES``/``NVIDIA_VISIBLE_DEVICES`` that name them,
and the driver's user-space files an image sandbox needs. Every root is a parameter, so a test can
build a node tree of real character devices anywhere.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from corral.errors import SandboxUnavailableError

DEV_ROOT = Path("/dev")
PROC_ROOT = Path("/proc/driver/nvidia")
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
BIN_DIRS = ("/usr/bin",)
CONTROL_NODES = ("nvidiactl", "nvidia-uvm")
# The compute and utility parts of the driver (what CUDA and NVML load), nothing for graphics.
DRIVER_LIBS = (
    "libcuda.so",
    "libcudadebugger.so",
    "libnvidia-ml.so",
    "libnvidia-cfg.so",
    "libnvidia-ptxjitcompiler.so",
    "libnvidia-nvvm.so",
    "libnvidia-gpucomp.so",
    "libnvidia-allocator.so",
    "libnvidia-opencl.so",
)
DRIVER_BINS = ("nvidia-smi",)
INSIDE_LIB = "/usr/local/nvidia/lib64"  # what NVIDIA's CUDA images already put on LD_LIBRARY_PATH
INSIDE_BIN = "/usr/local/nvidia/bin"


@dataclass(frozen=True)
class MigInstance:
    gi: int
    ci: int
    caps: tuple[str, ...]  # capability nodes, relative to the device root
    uuid: str | None = None
    memory_bytes: int | None = None


@dataclass(frozen=True)
class GpuDevice:
    index: int
    minor: int
    bus_id: str  # as the driver's /proc tree names it (gpus/<bus_id>)
    uuid: str | None
    model: str | None = None
    mig: tuple[MigInstance, ...] = ()

    @property
    def node(self) -> str:
        return f"nvidia{self.minor}"


@dataclass(frozen=True)
class GpuIdentity:
    """What NVML says of one GPU (``corral.monitor.nvml_identities`` reads it)."""

    index: int
    bus_id: str
    uuid: str
    mig: tuple[tuple[int, int, str, int | None], ...] = ()  # (gi, ci, MIG uuid, memory bytes)


@dataclass(frozen=True)
class DriverFile:
    """One of the driver's user-space files: bound read-only (``link`` None) or recreated as a link."""

    name: str
    host: str
    kind: Literal["lib", "bin"]
    link: str | None = None

    @property
    def inside(self) -> str:
        return f"{INSIDE_LIB if self.kind == 'lib' else INSIDE_BIN}/{self.name}"


@dataclass(frozen=True)
class GrantedGpu:
    """A whole GPU or one MIG instance of it."""

    index: int
    minor: int
    uuid: str | None
    bus_id: str = ""
    gi: int | None = None
    ci: int | None = None
    mig_uuid: str | None = None
    memory_bytes: int | None = None

    @property
    def visible_id(self) -> str | None:
        """How CUDA names it whatever the enumeration order inside: its (MIG) UUID."""
        return self.mig_uuid if self.gi is not None else self.uuid


@dataclass(frozen=True)
class GpuInventory:
    dev_root: Path
    gpus: tuple[GpuDevice, ...]
    proc_root: Path = PROC_ROOT
    control: tuple[str, ...] = ()
    driver_files: tuple[DriverFile, ...] = ()
    problem: str | None = None  # why this machine has no usable GPU

    def describe(self) -> str:
        if not self.gpus:
            return "no GPU"
        parts = []
        for g in self.gpus:
            mig = f", MIG {[f'{m.gi}/{m.ci}' for m in g.mig]}" if g.mig else ""
            parts.append(f"{g.index} ({g.uuid or 'uuid unknown'}, /dev/{g.node}{mig})")
        return "GPUs " + "; ".join(parts)


@dataclass(frozen=True)
class GpuGrant:
    """What one sandbox gets: device nodes (name under /dev -> host node), environment, driver files."""

    ids: tuple[int | str, ...]  # as the policy named them
    devices: tuple[GrantedGpu, ...]
    nodes: tuple[tuple[str, str], ...]
    env: Mapping[str, str] = field(default_factory=dict)
    driver_files: tuple[DriverFile, ...] = ()
    proc_root: str = str(PROC_ROOT)  # the driver's /proc tree: only the granted GPUs' entries stay visible


def _info(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def norm_bus_id(bus: str) -> str:
    """``00000000:07:00.0`` (NVML) and ``0000:07:00.0`` (/proc) as one form."""
    parts = bus.strip().lower().split(":")
    if len(parts) == 3:
        try:
            return f"{int(parts[0], 16):04x}:{parts[1]}:{parts[2]}"
        except ValueError:
            return bus.lower()
    return bus.lower()


def _cap_minor(path: Path) -> int | None:
    try:
        value = _info(path).get("DeviceFileMinor")
    except OSError:
        return None
    return int(value) if value is not None and value.isdigit() else None


def _mig(proc_root: Path, minor: int) -> tuple[MigInstance, ...]:
    base = proc_root / "capabilities" / f"gpu{minor}" / "mig"
    out: list[MigInstance] = []
    for gi_dir in sorted(base.glob("gi*"), key=lambda p: p.name):
        gi_s = gi_dir.name[2:]
        gi_minor = _cap_minor(gi_dir / "access")
        if not gi_s.isdigit() or gi_minor is None:
            continue
        for ci_dir in sorted(gi_dir.glob("ci*"), key=lambda p: p.name):
            ci_s = ci_dir.name[2:]
            ci_minor = _cap_minor(ci_dir / "access")
            if ci_s.isdigit() and ci_minor is not None:
                caps = (f"nvidia-caps/nvidia-cap{gi_minor}", f"nvidia-caps/nvidia-cap{ci_minor}")
                out.append(MigInstance(int(gi_s), int(ci_s), caps))
    return tuple(out)


def _is_chr(path: Path) -> bool:
    try:
        return stat.S_ISCHR(path.stat().st_mode)
    except OSError:
        return False


def _driver_files(lib_dirs: Sequence[str], bin_dirs: Sequence[str]) -> tuple[DriverFile, ...]:
    out: list[DriverFile] = []
    for d in lib_dirs:  # the first directory that holds the driver's libraries, not a mix of versions
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        found = [n for n in names if any(n == p or n.startswith(p + ".") for p in DRIVER_LIBS)]
        if not found:
            continue
        for n in found:
            out.append(_driver_file(Path(d), n, "lib", set(found)))
        break
    for d in bin_dirs:
        for n in DRIVER_BINS:
            p = Path(d) / n
            if p.is_file() and n not in {f.name for f in out if f.kind == "bin"}:
                out.append(DriverFile(n, str(p.resolve()), "bin"))
    return tuple(out)


def _driver_file(d: Path, name: str, kind: Literal["lib", "bin"], names: set[str]) -> DriverFile:
    p = d / name
    if p.is_symlink():
        target = os.readlink(p)
        if "/" not in target and target in names:
            return DriverFile(name, str(p), kind, link=target)
    return DriverFile(name, str(p.resolve()), kind)


def discover_gpus(
    dev_root: Path = DEV_ROOT,
    proc_root: Path = PROC_ROOT,
    *,
    lib_dirs: Sequence[str] = LIB_DIRS,
    bin_dirs: Sequence[str] = BIN_DIRS,
    identities: Sequence[GpuIdentity] = (),
) -> GpuInventory:
    """The GPUs of this machine as the driver shows them (see the module docstring)."""
    gpus_dir = proc_root / "gpus"
    if not gpus_dir.is_dir():
        return GpuInventory(
            dev_root,
            (),
            proc_root,
            problem=f"no NVIDIA GPU on this machine ({gpus_dir} does not exist: no driver loaded)",
        )
    found: list[tuple[str, str, int, str | None, str | None]] = []
    for info_file in gpus_dir.glob("*/information"):
        try:
            info = _info(info_file)
        except OSError:
            continue
        minor_s = info.get("Device Minor", "")
        if not minor_s.isdigit():
            continue
        uuid = info.get("GPU UUID") or None
        if uuid is not None and "?" in uuid:  # masked for unprivileged readers
            uuid = None
        bus = norm_bus_id(info.get("Bus Location") or info_file.parent.name)
        found.append((bus, info_file.parent.name, int(minor_s), uuid, info.get("Model")))
    by_bus = {norm_bus_id(i.bus_id): i for i in identities}
    gpus: list[GpuDevice] = []
    for pos, (bus, entry, minor, uuid, model) in enumerate(sorted(found, key=lambda f: (f[0], f[2]))):
        ident = by_bus.get(bus)
        mig = _mig(proc_root, minor)
        if ident is not None:
            named = {(gi, ci): (u, mem) for gi, ci, u, mem in ident.mig}
            mig = tuple(MigInstance(m.gi, m.ci, m.caps, *named.get((m.gi, m.ci), (None, None))) for m in mig)
        index = ident.index if ident is not None else pos
        gpus.append(GpuDevice(index, minor, entry, ident.uuid if ident else uuid, model, mig))
    gpus.sort(key=lambda g: g.index)
    control = tuple(n for n in CONTROL_NODES if _is_chr(dev_root / n))
    problem = None if gpus else f"no NVIDIA GPU on this machine ({gpus_dir} lists none)"
    return GpuInventory(dev_root, tuple(gpus), proc_root, control, _driver_files(lib_dirs, bin_dirs), problem)


def _resolve(inv: GpuInventory, ident: int | str) -> GrantedGpu:
    if isinstance(ident, int):
        for g in inv.gpus:
            if g.index == ident:
                return GrantedGpu(g.index, g.minor, g.uuid, g.bus_id)
        raise LookupError(f"GPU index {ident}")
    low = ident.lower()
    for g in inv.gpus:
        if g.uuid is not None and g.uuid.lower() == low:
            return GrantedGpu(g.index, g.minor, g.uuid, g.bus_id)
        for m in g.mig:
            legacy = g.uuid is not None and low == f"mig-{g.uuid.lower()}/{m.gi}/{m.ci}"
            if legacy or (m.uuid is not None and m.uuid.lower() == low):
                return GrantedGpu(g.index, g.minor, g.uuid, g.bus_id, m.gi, m.ci, m.uuid, m.memory_bytes)
    raise LookupError(ident)


def _mig_caps(inv: GpuInventory, d: GrantedGpu) -> tuple[str, ...]:
    for g in inv.gpus:
        if g.index == d.index:
            for m in g.mig:
                if (m.gi, m.ci) == (d.gi, d.ci):
                    return m.caps
    return ()


def grant_gpus(inv: GpuInventory, ids: Sequence[int | str], *, host_libraries: bool = True) -> GpuGrant:
    """The grant for these policy ids; SandboxUnavailableError when the machine cannot honour it."""
    if not inv.gpus:
        raise SandboxUnavailableError(
            f"the policy grants GPUs (gpu.devices: {list(ids)}) but "
            f"{inv.problem or 'this machine has no GPU'}"
        )
    devices: list[GrantedGpu] = []
    for i, ident in enumerate(ids):
        try:
            devices.append(_resolve(inv, ident))
        except LookupError:
            raise SandboxUnavailableError(
                f"gpu.devices[{i}]: {ident!r} is not on this machine (it has {inv.describe()})"
            ) from None
    for name in CONTROL_NODES:
        if name not in inv.control:
            raise SandboxUnavailableError(
                f"{inv.dev_root / name} is missing: CUDA cannot run without it "
                "(create it with `nvidia-modprobe -u -c=0` as root)"
            )
    names: list[str] = [*CONTROL_NODES]
    for d in devices:
        names.append(f"nvidia{d.minor}")
        if d.gi is not None:
            names.extend(_mig_caps(inv, d))
    nodes: list[tuple[str, str]] = []
    for name in dict.fromkeys(names):
        host = inv.dev_root / name
        if not _is_chr(host):
            raise SandboxUnavailableError(f"{host} is not a character device: the GPU cannot be granted")
        nodes.append((name, str(host)))
    known = [d.visible_id for d in devices if d.visible_id is not None]
    # By UUID when every one is known; else by position, as the sandbox enumerates only what it holds.
    ids_text = ",".join(known) if len(known) == len(devices) else ",".join(map(str, range(len(devices))))
    env = {"CUDA_VISIBLE_DEVICES": ids_text, "NVIDIA_VISIBLE_DEVICES": ids_text}
    files = inv.driver_files if host_libraries else ()
    return GpuGrant(tuple(ids), tuple(devices), tuple(nodes), env, files, str(inv.proc_root))


class GpuAllocator:
    """Hands each sandbox ``n`` ids of the policy's pool, the least used first (ties: pool order)."""

    def __init__(self, pool: Sequence[int | str]) -> None:
        self._pool = list(pool)
        self._held: dict[str, tuple[int | str, ...]] = {}
        self._lock = threading.Lock()

    def acquire(self, sandbox_id: str, n: int) -> tuple[int | str, ...]:
        with self._lock:
            if sandbox_id in self._held:
                return self._held[sandbox_id]
            load = {d: 0 for d in self._pool}
            for held in self._held.values():
                for d in held:
                    load[d] += 1
            order = sorted(range(len(self._pool)), key=lambda i: (load[self._pool[i]], i))
            picked = tuple(self._pool[i] for i in sorted(order[:n]))
            self._held[sandbox_id] = picked
            return picked

    def release(self, sandbox_id: str) -> None:
        with self._lock:
            self._held.pop(sandbox_id, None)

    def held(self) -> Mapping[str, tuple[int | str, ...]]:
        with self._lock:
            return dict(self._held)
