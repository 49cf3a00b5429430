"""A fake NVIDIA node for GPU tests on machines without one: real character devices, fake driver files.

The device nodes are made with mknod from the harmless memory devices, so a sandbox that is granted
one can really open it, and reading it tells which host node it got: ``/dev/zero`` (1:5) reads
zeros, ``/dev/full`` (1:7) refuses writes with ENOSPC, ``/dev/null`` (1:3) reads nothing. The
/proc tree has the driver's own file formats (``information``, MIG ``access`` files).

Imported as ``gpu_support`` (the tests folder is on sys.path through its conftest).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ZERO, FULL, NULL = (1, 5), (1, 7), (1, 3)

# Bus order is not minor order here on purpose: index 0 (bus 07) is minor 1, index 1 (bus 41) minor 0.
UUID_A = "GPU-0a1b2c3d-0000-4000-8000-00000000000a"  # index 0, minor 1, /dev/nvidia1 = zero
UUID_B = "GPU-0a1b2c3d-0000-4000-8000-00000000000b"  # index 1, minor 0, /dev/nvidia0 = full
MIG_UUID = "MIG-5f6e7d8c-0000-4000-8000-0000000000c1"


@dataclass(frozen=True)
class FakeNode:
    dev: Path
    proc: Path
    lib: Path
    bin: Path


def _node(path: Path, majmin: tuple[int, int], mode: int = 0o666) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, 0o020000 | mode, os.makedev(*majmin))
    os.chmod(path, mode)


def _info(proc: Path, bus: str, minor: int, uuid: str) -> None:
    d = proc / "gpus" / bus
    d.mkdir(parents=True)
    (d / "information").write_text(
        "Model: \t\t NVIDIA H100 80GB HBM3\n"
        "IRQ:   \t\t 180\n"
        f"GPU UUID: \t {uuid}\n"
        "Video BIOS: \t 96.00.99.00.01\n"
        "Bus Type: \t PCIe\n"
        "DMA Size: \t 52 bits\n"
        f"Bus Location: \t {bus}\n"
        f"Device Minor: \t {minor}\n"
        "GPU Excluded:\t No\n"
    )


def _cap(path: Path, minor: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"DeviceFileMinor: {minor}\nDeviceFileMode: 292\nDeviceFileModify: 1\n")


def fake_node(root: Path, *, mig: bool = False, uvm: bool = True) -> FakeNode:
    """Two GPUs (see the UUIDs above); with ``mig``, GPU index 0 has MIG instance gi 1 / ci 0."""
    dev, proc, lib, bins = root / "dev", root / "proc", root / "lib", root / "bin"
    _node(dev / "nvidia1", ZERO)
    _node(dev / "nvidia0", FULL)
    _node(dev / "nvidiactl", NULL)
    if uvm:
        _node(dev / "nvidia-uvm", NULL)
    _node(dev / "nvidia-uvm-tools", NULL)  # never granted
    _node(dev / "nvidia-modeset", NULL)  # never granted
    _info(proc, "0000:07:00.0", 1, UUID_A)
    _info(proc, "0000:41:00.0", 0, UUID_B)
    if mig:
        _node(dev / "nvidia-caps" / "nvidia-cap1", NULL, 0o400)  # MIG config: never granted
        _node(dev / "nvidia-caps" / "nvidia-cap2", NULL, 0o444)  # MIG monitor: never granted
        _node(dev / "nvidia-caps" / "nvidia-cap21", ZERO, 0o444)
        _node(dev / "nvidia-caps" / "nvidia-cap22", ZERO, 0o444)
        _node(dev / "nvidia-caps" / "nvidia-cap30", FULL, 0o444)  # another instance (gi 2)
        _node(dev / "nvidia-caps" / "nvidia-cap31", FULL, 0o444)
        caps = proc / "capabilities"
        _cap(caps / "mig" / "config", 1)
        _cap(caps / "mig" / "monitor", 2)
        _cap(caps / "gpu1" / "mig" / "gi1" / "access", 21)
        _cap(caps / "gpu1" / "mig" / "gi1" / "ci0" / "access", 22)
        _cap(caps / "gpu1" / "mig" / "gi2" / "access", 30)
        _cap(caps / "gpu1" / "mig" / "gi2" / "ci0" / "access", 31)
    lib.mkdir(parents=True)
    (lib / "libcuda.so.550.54.15").write_bytes(b"\x7fELF fake libcuda\n")
    (lib / "libcuda.so.1").symlink_to("libcuda.so.550.54.15")
    (lib / "libnvidia-ml.so.550.54.15").write_bytes(b"\x7fELF fake libnvidia-ml\n")
    (lib / "libnvidia-ml.so.1").symlink_to("libnvidia-ml.so.550.54.15")
    (lib / "libnvidia-glcore.so.550.54.15").write_bytes(b"graphics: never bound\n")
    (lib / "libssl.so.3").write_bytes(b"not the driver's\n")
    bins.mkdir(parents=True)
    smi = bins / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho fake nvidia-smi\n")
    smi.chmod(0o755)
    return FakeNode(dev, proc, lib, bins)
