"""GPU grants: discovery of the driver's view, and exactly the granted device nodes bound into a sandbox.

No GPU here: the nodes are real character devices made with mknod (see gpu_support), so the bind
path is the real one and a sandbox can open what it was given.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from corral import Policy, TraceContext
from corral.errors import SandboxSetupError, SandboxUnavailableError
from corral.sandbox import (
    GpuAllocator,
    GpuGrant,
    GpuIdentity,
    GpuInventory,
    Jail,
    discover_gpus,
    grant_gpus,
)
from corral.sandbox._zygote import _mounts, _sys
from gpu_support import MIG_UUID, UUID_A, UUID_B, FakeNode, fake_node

BUSYBOX = shutil.which("busybox")


def _inventory(node: FakeNode, identities: tuple[GpuIdentity, ...] = ()) -> GpuInventory:
    return discover_gpus(
        node.dev, node.proc, lib_dirs=[str(node.lib)], bin_dirs=[str(node.bin)], identities=identities
    )


def _run(policy: Policy, grant: GpuGrant | None, command: str, image: object = None) -> tuple[int, str]:
    async def go() -> tuple[int, str]:
        jail = await Jail.create(policy, gpu=grant, image=image)  # type: ignore[arg-type]
        try:
            out = await jail.run(command, ctx=TraceContext(run_id="gpu"))
            return out.raw.exit_code, out.raw.stdout.decode() + out.raw.stderr.decode()
        finally:
            await jail.close()

    return asyncio.run(go())


def test_discovery_reads_the_drivers_view_in_pci_order(tmp_path: Path) -> None:
    inv = _inventory(fake_node(tmp_path, mig=True))
    assert [(g.index, g.minor, g.uuid, g.bus_id) for g in inv.gpus] == [
        (0, 1, UUID_A, "0000:07:00.0"),  # index by bus order, not by minor
        (1, 0, UUID_B, "0000:41:00.0"),
    ]
    assert inv.gpus[0].model == "NVIDIA H100 80GB HBM3"
    mig = inv.gpus[0].mig
    assert [(m.gi, m.ci, m.caps) for m in mig] == [
        (1, 0, ("nvidia-caps/nvidia-cap21", "nvidia-caps/nvidia-cap22")),
        (2, 0, ("nvidia-caps/nvidia-cap30", "nvidia-caps/nvidia-cap31")),
    ]
    assert inv.control == ("nvidiactl", "nvidia-uvm")
    files = {f.name: (f.kind, f.link) for f in inv.driver_files}
    assert files == {
        "libcuda.so.1": ("lib", "libcuda.so.550.54.15"),
        "libcuda.so.550.54.15": ("lib", None),
        "libnvidia-ml.so.1": ("lib", "libnvidia-ml.so.550.54.15"),
        "libnvidia-ml.so.550.54.15": ("lib", None),
        "nvidia-smi": ("bin", None),
    }  # no graphics library, nothing that is not the driver's


def test_nvml_identities_name_mig_instances(tmp_path: Path) -> None:
    ident = GpuIdentity(0, "00000000:07:00.0", UUID_A, mig=((1, 0, MIG_UUID, 10 << 30),))
    inv = _inventory(fake_node(tmp_path, mig=True), (ident,))
    g = grant_gpus(inv, [MIG_UUID])
    assert [(d.index, d.gi, d.ci, d.mig_uuid, d.memory_bytes) for d in g.devices] == [
        (0, 1, 0, MIG_UUID, 10 << 30)
    ]
    assert g.env["CUDA_VISIBLE_DEVICES"] == MIG_UUID


@pytest.mark.parametrize(
    ("ids", "nodes", "visible"),
    [
        ([0], ["nvidiactl", "nvidia-uvm", "nvidia1"], UUID_A),
        ([UUID_B], ["nvidiactl", "nvidia-uvm", "nvidia0"], UUID_B),
        ([UUID_B.lower(), 0], ["nvidiactl", "nvidia-uvm", "nvidia0", "nvidia1"], f"{UUID_B},{UUID_A}"),
        (
            [f"MIG-{UUID_A}/1/0"],
            ["nvidiactl", "nvidia-uvm", "nvidia1", "nvidia-caps/nvidia-cap21", "nvidia-caps/nvidia-cap22"],
            "0",  # no NVML here: the instance is the only one the sandbox can open, so it is device 0
        ),
    ],
)
def test_grants_name_exact_nodes(
    tmp_path: Path, ids: list[int | str], nodes: list[str], visible: str
) -> None:
    node = fake_node(tmp_path, mig=True)
    g = grant_gpus(_inventory(node), ids)
    assert [n for n, _ in g.nodes] == nodes
    assert all(host == str(node.dev / n) for n, host in g.nodes)
    assert g.env == {"CUDA_VISIBLE_DEVICES": visible, "NVIDIA_VISIBLE_DEVICES": visible}


def test_a_machine_without_gpus_says_so(tmp_path: Path) -> None:
    inv = discover_gpus(tmp_path / "dev", tmp_path / "proc")
    assert inv.gpus == () and inv.problem is not None and "no NVIDIA GPU" in inv.problem
    with pytest.raises(SandboxUnavailableError, match=r"grants GPUs \(gpu.devices: \[0\]\) but no NVIDIA"):
        grant_gpus(inv, [0])


def test_unknown_ids_and_missing_nodes_are_clear_errors(tmp_path: Path) -> None:
    node = fake_node(tmp_path / "a", uvm=False)
    inv = _inventory(node)
    with pytest.raises(SandboxUnavailableError, match=r"gpu.devices\[1\]: 7 is not on this machine .*GPUs 0"):
        grant_gpus(inv, [0, 7])
    with pytest.raises(SandboxUnavailableError, match="nvidia-uvm is missing"):
        grant_gpus(inv, [0])
    other = fake_node(tmp_path / "b")
    (other.dev / "nvidia1").unlink()
    (other.dev / "nvidia1").write_text("a regular file is no device")
    with pytest.raises(SandboxUnavailableError, match="nvidia1 is not a character device"):
        grant_gpus(_inventory(other), [0])


def test_allocator_spreads_sandboxes_over_the_pool() -> None:
    a = GpuAllocator([0, 1, 2])
    assert a.acquire("s1", 1) == (0,)
    assert a.acquire("s2", 1) == (1,)
    assert a.acquire("s3", 2) == (0, 2)  # least used first: 2 (none), then 0 (one, earlier in the pool)
    assert a.acquire("s1", 1) == (0,)  # idempotent for a sandbox
    a.release("s2")
    assert a.acquire("s4", 1) == (1,)


def test_default_sandbox_has_no_gpu_node(policy: Policy) -> None:
    code, out = _run(policy, None, "ls -A /dev; env")
    assert code == 0
    assert "nvidia" not in out.lower() and "CUDA_VISIBLE_DEVICES" not in out


def test_granted_sandbox_gets_only_its_nodes_and_can_use_them(policy: Policy, tmp_path: Path) -> None:
    node = fake_node(tmp_path, mig=True)
    g = grant_gpus(_inventory(node), [0])
    code, out = _run(
        policy,
        g,
        "ls -A /dev | grep nvidia; echo ---; head -c 4 /dev/nvidia1 | od -An -tx1; "
        "stat -c '%F %t:%T' /dev/nvidia1; echo x > /dev/nvidiactl && echo ctl-ok; "
        "echo CUDA=$CUDA_VISIBLE_DEVICES NV=$NVIDIA_VISIBLE_DEVICES; "
        "echo opts $(grep ' /dev/nvidia1 ' /proc/self/mountinfo | cut -d' ' -f6)",
    )
    assert code == 0, out
    opts = out.rsplit("opts ", 1)[1].split()[0].split(",")
    assert "nosuid" in opts and "noexec" not in opts  # a driver may map its device with PROT_EXEC
    listed, _, rest = out.partition("---\n")
    assert listed.split() == ["nvidia-uvm", "nvidia1", "nvidiactl"]  # not nvidia0, uvm-tools, modeset, caps
    assert "00 00 00 00" in rest  # host's nvidia1 is the zero device: the right node, and it works
    assert "character special file 1:5" in rest and "ctl-ok" in rest
    assert f"CUDA={UUID_A} NV={UUID_A}" in rest


def test_mig_grant_binds_its_capabilities_only(policy: Policy, tmp_path: Path) -> None:
    node = fake_node(tmp_path, mig=True)
    g = grant_gpus(_inventory(node), [f"MIG-{UUID_A}/1/0"])
    cmd = "ls -A /dev/nvidia-caps; head -c 2 /dev/nvidia-caps/nvidia-cap22 | od -An -tx1"
    code, out = _run(policy, g, cmd)
    assert code == 0, out
    assert out.split()[:2] == ["nvidia-cap21", "nvidia-cap22"] and "00 00" in out
    assert "nvidia-cap1\n" not in out and "nvidia-cap2\n" not in out and "cap30" not in out


def test_a_node_gone_before_the_build_fails_it(policy: Policy, tmp_path: Path) -> None:
    node = fake_node(tmp_path)
    g = grant_gpus(_inventory(node), [0])
    (node.dev / "nvidia1").unlink()  # e.g. the driver was unloaded between discovery and the build
    with pytest.raises(SandboxSetupError, match="nvidia1"):
        _run(policy, g, "true")


@dataclass(frozen=True)
class _DirImage:
    rootfs: Path
    env: Mapping[str, str] = field(default_factory=lambda: {"PATH": "/bin", "LD_LIBRARY_PATH": "/opt/lib"})
    working_dir: str | None = None


def _busybox_root(tmp: Path) -> Path:
    assert BUSYBOX is not None, "busybox (Debian busybox-static) is required"
    root = tmp / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "ls", "cat", "echo", "readlink", "touch", "env"):
        os.symlink("busybox", root / "bin" / applet)
    (root / "etc").mkdir()
    return root


def test_image_sandbox_sees_the_hosts_driver_files_read_only(policy: Policy, tmp_path: Path) -> None:
    node = fake_node(tmp_path)
    g = grant_gpus(_inventory(node), [1])
    image = _DirImage(_busybox_root(tmp_path))
    code, out = _run(
        policy,
        g,
        "ls /usr/local/nvidia/lib64; readlink /usr/local/nvidia/lib64/libcuda.so.1; "
        "cat /usr/local/nvidia/lib64/libcuda.so.1; nvidia-smi; "
        "touch /usr/local/nvidia/lib64/libcuda.so.1 2>/dev/null || echo read-only; "
        "echo LD=$LD_LIBRARY_PATH; echo PATH=$PATH; ls -A /dev | grep nvidia",
        image=image,
    )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[:4] == [
        "libcuda.so.1",
        "libcuda.so.550.54.15",
        "libnvidia-ml.so.1",
        "libnvidia-ml.so.550.54.15",
    ]
    assert "libcuda.so.550.54.15" in lines[4] and "fake libcuda" in out and "fake nvidia-smi" in out
    assert "read-only" in out
    assert "LD=/usr/local/nvidia/lib64:/opt/lib" in out and "PATH=/bin:/usr/local/nvidia/bin" in out
    assert lines[-3:] == ["nvidia-uvm", "nvidia0", "nvidiactl"]


def test_image_libraries_mode_binds_no_host_file(policy: Policy, tmp_path: Path) -> None:
    node = fake_node(tmp_path)
    g = grant_gpus(_inventory(node), [0], host_libraries=False)
    image = _DirImage(_busybox_root(tmp_path))
    code, out = _run(policy, g, "ls /usr/local/nvidia 2>&1; echo LD=$LD_LIBRARY_PATH", image)
    assert "No such file" in out and "LD=/opt/lib" in out, out
    assert code == 0


@pytest.fixture
def visible_node() -> Iterator[FakeNode]:
    """A fake node under /var/tmp, which a policy can bind into sandboxes (their /tmp is their own)."""
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="corral-gpu-"))
    base.chmod(0o755)  # as readable as the driver's /proc tree
    try:
        yield fake_node(base)
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("lifetime", ["call", "episode"])
def test_only_granted_gpus_show_in_the_drivers_proc_tree(
    policy: Policy, visible_node: FakeNode, lifetime: str
) -> None:
    node = visible_node
    p = policy.with_overrides(
        filesystem={"read_only_binds": [*policy.filesystem.read_only_binds, str(node.proc.parent)]},
        processes={"lifetime": lifetime},
    )
    g = grant_gpus(_inventory(node), [1])
    gpus = node.proc / "gpus"
    cmd = f"ls {gpus}; grep -h UUID {gpus}/*/information; touch {gpus}/x 2>/dev/null || echo ro"
    code, out = _run(p, g, cmd)
    assert code == 0, out
    lines = out.split()
    assert lines[:3] == ["0000:41:00.0", "GPU", "UUID:"] and UUID_B in out and UUID_A not in out
    assert out.rstrip().endswith("ro")
    assert sorted(os.listdir(node.proc / "gpus")) == ["0000:07:00.0", "0000:41:00.0"]  # the host's is intact


def test_without_a_grant_no_gpu_shows_in_the_drivers_proc_tree(tmp_path: Path) -> None:
    node = fake_node(tmp_path)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a private mount namespace, as a call has: nothing of this reaches the host
        try:
            os.close(r)
            _sys.unshare(_sys.CLONE_NEWNS)
            _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE)
            _mounts._nvidia_gpus(str(node.proc), [])
            os.write(w, json.dumps(os.listdir(node.proc / "gpus")).encode())
        finally:
            os._exit(0)
    os.close(w)
    seen = os.read(r, 4096)
    os.close(r)
    os.waitpid(pid, 0)
    assert json.loads(seen) == []
    assert len(os.listdir(node.proc / "gpus")) == 2
