"""What a sandbox's namespaces contain, as data: the mount plan the zygote executes (pure, no I/O
beyond looking at host paths).

The root is either the host's system directories bound read-only on an empty
tmpfs (no image), or an image's root filesystem under a copy-on-write overlay
whose changes stay private to the sandbox. The workspace is a size-capped tmpfs,
or an overlay whose read-only lower layer is a host template directory, shown as
owned by the agent through an idmapped mount so the template is never changed.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from corral.errors import SandboxSetupError
from corral.policy import Policy
from corral.sandbox._gpu import INSIDE_BIN, INSIDE_LIB, PROC_ROOT, GpuGrant

INSIDE_UID = 1000
INSIDE_GID = 1000
INSIDE_USER = "agent"
HOSTNAME = "corral"
ROOT_TMPFS_BYTES = 8 * 1024 * 1024
ROOT_OVERLAY_BYTES = 64 * 1024 * 1024  # what an image root's copy-on-write layer may hold when writable

# Directories that hold programs; with a program allowlist only the allowed files appear in them.
PROGRAM_DIRS = (
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/games",
    "/usr/local/games",
)
# Helper-program trees masked under an allowlist (programs run via these would bypass it).
HELPER_DIRS = ("/usr/libexec", "/usr/local/libexec")
_RO = ["ro", "nosuid", "nodev"]

Op = dict[str, Any]


class ImageView(Protocol):
    """What the runtime needs of an unpacked image (``corral.images.Image`` satisfies it)."""

    @property
    def rootfs(self) -> Path: ...

    @property
    def env(self) -> Mapping[str, str]: ...

    @property
    def working_dir(self) -> str | None: ...


@dataclass(frozen=True)
class SandboxSpec:
    """Everything that decides a sandbox's view, besides the policy."""

    host_uid: int
    image: ImageView | None = None
    workspace_template: Path | None = None
    net_files: Mapping[str, str] = field(default_factory=dict)  # inside path -> host file (resolv.conf)
    gpu: GpuGrant | None = None  # the GPU device nodes (and driver files) this sandbox may use


@dataclass(frozen=True)
class BuildPlan:
    root: Op
    ops: list[Op]
    tmp: dict[str, Any]
    read_only_root: bool
    cwd: str
    env: dict[str, str]  # the image's environment (applied under the policy's and the call's)
    programs: Mapping[str, str] | None

    def request(self, spec: SandboxSpec, staging: str, aux: str) -> dict[str, Any]:
        return {
            "op": "build",
            "root": self.root,
            "plan": self.ops,
            "tmp": self.tmp,
            "read_only_root": self.read_only_root,
            "hostname": HOSTNAME,
            "staging": staging,
            "aux": aux,
            "host_uid": spec.host_uid,
            "host_gid": spec.host_uid,
            "inside_id": INSIDE_UID,
        }


def idmap_to(owner: int, target: int) -> list[list[int]]:
    """An id mapping showing files of ``owner`` as ``target``; every other id keeps its value
    (except ``target`` itself, which cannot appear twice)."""
    lo, hi = sorted((owner, target))
    out = [[owner, target, 1]]
    ranges = [(0, lo), (lo + 1, hi), (hi + 1, 4294967294)]
    for start, end in ranges:
        if end > start:
            out.append([start, start, end - start])
    return out


def resolve_programs(names: Sequence[str], path_env: str) -> dict[str, str]:
    """Map each allowed program to ``{inside path: host file}``; unknown names are an error."""
    out: dict[str, str] = {}
    for name in names:
        if name.startswith("/"):
            host: str | None = name if os.path.isfile(name) and os.access(name, os.X_OK) else None
        else:
            host = shutil.which(name, path=path_env)
        if host is None:
            raise SandboxSetupError(f"programs.allow: {name!r} is not an executable file on the sandbox PATH")
        out[host] = os.path.realpath(host)
    return out


def read_in_root(root: Path, rel: str, limit: int = 1 << 20) -> str | None:
    """A small regular file inside an (untrusted) root, never following a symlink; None if absent."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parts = [p for p in rel.split("/") if p]
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_RDONLY if last else os.O_PATH | os.O_DIRECTORY)
            try:
                nxt = os.open(name, flags, dir_fd=fd)
            except OSError:
                return None
            os.close(fd)
            fd = nxt
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, limit)
        return data.decode("utf-8", "replace")
    finally:
        os.close(fd)


def _identity_files(image_root: Path | None, home: str) -> tuple[str, str]:
    agent_pw = f"{INSIDE_USER}:x:{INSIDE_UID}:{INSIDE_GID}:agent:{home}:/bin/sh\n"
    agent_gr = f"{INSIDE_USER}:x:{INSIDE_GID}:\n"
    base_pw = (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    base_gr = "root:x:0:\nnogroup:x:65534:\n"
    if image_root is not None:
        pw = read_in_root(image_root, "etc/passwd")
        gr = read_in_root(image_root, "etc/group")
        if pw is not None:
            base_pw = "".join(
                line + "\n" for line in pw.splitlines() if line.split(":")[2:3] != [str(INSIDE_UID)]
            )
        if gr is not None:
            base_gr = "".join(
                line + "\n" for line in gr.splitlines() if line.split(":")[2:3] != [str(INSIDE_GID)]
            )
    return base_pw + agent_pw, base_gr + agent_gr


def _host_system(policy: Policy, ops: list[Op]) -> None:
    for p in policy.filesystem.read_only_binds:
        if os.path.islink(p):
            ops.append({"op": "symlink", "dst": p, "target": os.readlink(p)})
        elif os.path.exists(p):
            ops.append({"op": "bind", "src": p, "dst": p, "flags": _RO, "recursive": True})


def _allowlist(programs: Mapping[str, str], ops: list[Op]) -> None:
    for d in PROGRAM_DIRS:
        if os.path.isdir(d) and not os.path.islink(d):
            ops.append(
                {"op": "tmpfs", "dst": d, "size": 1 << 20, "mode": 0o755, "flags": ["nosuid", "nodev"]}
            )
    for d in HELPER_DIRS:
        ops.append({"op": "mask", "dst": d})
    for inside, host in sorted(programs.items()):
        ops.append({"op": "bind", "src": host, "dst": inside, "flags": _RO, "recursive": False})
    for d in PROGRAM_DIRS:
        if os.path.isdir(d) and not os.path.islink(d):
            ops.append({"op": "readonly", "dst": d})


def plan(policy: Policy, spec: SandboxSpec) -> BuildPlan:
    """The mount plan of one sandbox (see the module docstring)."""
    uid = spec.host_uid
    ws = policy.workspace
    allowlist = policy.programs.allow is not None
    programs = (
        resolve_programs(policy.programs.allow, policy.env.set.get("PATH", "/usr/bin:/bin"))
        if (policy.programs.allow)
        else None
    )
    ops: list[Op] = []
    image = spec.image
    writable_root = image is not None and policy.filesystem.image_root == "copy_on_write"
    if image is None:
        root: Op = {"op": "root_tmpfs", "size": ROOT_TMPFS_BYTES}
        _host_system(policy, ops)
    else:
        root = {
            "op": "root_overlay",
            "lower": [str(image.rootfs)],
            "size": ROOT_OVERLAY_BYTES if writable_root else 1 << 20,
            # A writable copy shows the image's root-owned files as the agent's, as a container's root
            # would see them, without any capability; read-only images keep their owners.
            "idmap": idmap_to(0, uid) if writable_root else None,
            **({"uid": uid, "gid": uid} if writable_root else {}),
        }
    if programs is not None:
        _allowlist(programs, ops)
    for p in policy.filesystem.hidden_paths:
        ops.append({"op": "mask", "dst": p})
    passwd, group = _identity_files(image.rootfs if image is not None else None, ws.mount_point)
    ops.append({"op": "file", "dst": "/etc/passwd", "content": passwd})
    ops.append({"op": "file", "dst": "/etc/group", "content": group})
    for inside, host in sorted(spec.net_files.items()):
        ops.append({"op": "bind", "src": host, "dst": inside, "flags": _RO, "recursive": False})
    gpu = spec.gpu
    ops.append({"op": "dev", "extra": [list(n) for n in gpu.nodes] if gpu is not None else []})
    if gpu is not None and image is not None:  # without an image the host's driver files are under /usr
        for f in gpu.driver_files:
            if f.link is not None:
                ops.append({"op": "symlink", "dst": f.inside, "target": f.link})
            else:
                ops.append({"op": "bind", "src": f.host, "dst": f.inside, "flags": _RO, "recursive": False})
    for d in ("/proc", "/tmp"):
        ops.append({"op": "mkdir", "dst": d})
    ws_flags = ["nosuid", "nodev"] + (["noexec"] if allowlist else [])
    if ws.writable_host_path is not None:
        src = Path(ws.writable_host_path)
        owner = _dir_owner(src, "workspace.writable_host_path")
        ops.append(
            {
                "op": "bind",
                "src": str(src),
                "dst": ws.mount_point,
                "flags": ws_flags,
                "recursive": False,
                "idmap": idmap_to(owner, uid),
            }
        )
    elif spec.workspace_template is not None:
        src = spec.workspace_template
        owner = _dir_owner(src, "workspace template")
        ops.append(
            {
                "op": "overlay",
                "dst": ws.mount_point,
                "lower": [str(src)],
                "size": ws.size_max_bytes,
                "idmap": idmap_to(owner, uid),
                "flags": ws_flags,
                # the top directory of an overlay is its upper layer's: make it look like the template's
                "uid": uid,
                "gid": uid,
                "mode": stat.S_IMODE(src.stat().st_mode),
            }
        )
    else:
        ops.append(
            {
                "op": "tmpfs",
                "dst": ws.mount_point,
                "size": ws.size_max_bytes,
                "mode": 0o700,
                "uid": uid,
                "gid": uid,
                "flags": ws_flags,
            }
        )
    cwd = ws.mount_point
    env: dict[str, str] = {}
    if image is not None:
        env = dict(image.env)
        if image.working_dir:
            cwd = image.working_dir
    if gpu is not None:
        env.update(_gpu_env(policy, gpu, env, bound=image is not None))
    # The driver's /proc entries of GPUs the sandbox was not granted are hidden (all of them without a
    # grant); the rest of the driver's /proc tree (params, MIG capabilities) stays for CUDA to read.
    nvidia = {
        "root": gpu.proc_root if gpu is not None else str(PROC_ROOT),
        "keep": sorted({d.bus_id for d in gpu.devices}) if gpu is not None else [],
    }
    tmp = {"size": policy.filesystem.tmp_size_max_bytes, "noexec": allowlist, "nvidia": nvidia}
    return BuildPlan(root, ops, tmp, not writable_root, cwd, env, programs)


def _gpu_env(policy: Policy, gpu: GpuGrant, image_env: Mapping[str, str], *, bound: bool) -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES and friends; the bound driver directories first on the search paths."""
    env = dict(gpu.env)
    kinds = {f.kind for f in gpu.driver_files} if bound else set()
    if "lib" in kinds:
        rest = image_env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = INSIDE_LIB + (f":{rest}" if rest else "")
    if "bin" in kinds:
        path = image_env.get("PATH") or policy.env.set.get("PATH", "/usr/bin:/bin")
        env["PATH"] = f"{path}:{INSIDE_BIN}"
    return env


def _dir_owner(path: Path, what: str) -> int:
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise SandboxSetupError(f"{what} {path} does not exist") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise SandboxSetupError(f"{what} {path} is not a directory")
    return st.st_uid
