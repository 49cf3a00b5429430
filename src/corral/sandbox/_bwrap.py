"""Building the bubblewrap command line for one call (pure: no I/O beyond looking at host paths)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from corral.errors import SandboxSetupError
from corral.policy import Policy

INSIDE_UID = 1000
INSIDE_GID = 1000
INSIDE_USER = "agent"
HOSTNAME = "corral"

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


@dataclass(frozen=True)
class CallMounts:
    """Host-side paths prepared for a sandbox, bound into every call."""

    workspace: Path
    passwd: Path
    group: Path
    scratch: Path | None = None  # noexec tmpfs used for /tmp and /dev/shm under an allowlist
    extra_ro_files: Mapping[str, str] = field(default_factory=dict)  # inside -> host


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


def _bind_system(policy: Policy, args: list[str]) -> None:
    for p in policy.filesystem.read_only_binds:
        if os.path.islink(p):
            args += ["--symlink", os.readlink(p), p]
        elif os.path.exists(p):
            args += ["--ro-bind", p, p]


def _mask(paths: Sequence[str], args: list[str]) -> None:
    for p in paths:
        if os.path.islink(p) or not os.path.exists(p):
            continue
        if os.path.isdir(p):
            args += ["--tmpfs", p, "--remount-ro", p]
        else:
            args += ["--ro-bind", "/dev/null", p]


def _gpu_devices(policy: Policy) -> list[str]:
    devs = policy.gpu.devices
    if devs == ():
        return []
    nodes = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]
    if devs == "all":
        nodes += sorted(str(p) for p in Path("/dev").glob("nvidia[0-9]*"))
    else:
        nodes += [f"/dev/nvidia{i}" for i in devs]
    return [n for n in nodes if os.path.exists(n)]


def build_argv(
    policy: Policy,
    mounts: CallMounts,
    command: Sequence[str],
    env: Mapping[str, str],
    *,
    seccomp_fd: int,
    programs: Mapping[str, str] | None,
    own_netns: bool,
    bwrap: str = "bwrap",
) -> list[str]:
    """The full bwrap argv. ``own_netns``: give the call an empty network namespace (network: none)."""
    a: list[str] = [bwrap, "--unshare-user", "--unshare-ipc", "--unshare-uts"]
    if not policy.processes.outlive_call:
        # A pid namespace per call: when the command exits, the kernel kills whatever it left.
        # Letting processes outlive the call (a deliberately weak mode) means sharing the host's.
        a += ["--unshare-pid"]
    a += ["--unshare-cgroup-try"]
    if own_netns:
        a += ["--unshare-net"]
    a += ["--uid", str(INSIDE_UID), "--gid", str(INSIDE_GID), "--hostname", HOSTNAME]
    a += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    _bind_system(policy, a)
    if programs is not None:
        for d in PROGRAM_DIRS:
            if os.path.isdir(d) and not os.path.islink(d):
                a += ["--tmpfs", d]
        _mask(HELPER_DIRS, a)
        for inside, host in sorted(programs.items()):
            a += ["--ro-bind", host, inside]
        for d in PROGRAM_DIRS:
            if os.path.isdir(d) and not os.path.islink(d):
                a += ["--remount-ro", d]
    _mask(policy.filesystem.hidden_paths, a)
    a += ["--ro-bind", str(mounts.passwd), "/etc/passwd", "--ro-bind", str(mounts.group), "/etc/group"]
    for inside, host in sorted(mounts.extra_ro_files.items()):
        a += ["--ro-bind", host, inside]
    a += ["--proc", "/proc", "--dev", "/dev"]
    for dev in _gpu_devices(policy):
        a += ["--dev-bind", dev, dev]
    if mounts.scratch is not None:
        for sub, inside in (("tmp", "/tmp"), ("shm", "/dev/shm")):
            a += ["--bind", str(mounts.scratch / sub), inside]
    else:
        a += ["--size", str(policy.filesystem.tmp_size_max_bytes), "--tmpfs", "/tmp"]
    ws = policy.workspace.mount_point
    a += ["--bind", str(mounts.workspace), ws, "--remount-ro", "/", "--chdir", ws]
    a += ["--clearenv"]
    for k, v in sorted(env.items()):
        a += ["--setenv", k, v]
    a += ["--seccomp", str(seccomp_fd), "--"]
    a += list(command)
    return a


def call_env(policy: Policy, extra: Mapping[str, str], host_env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a call: never the host's, only what the policy and egress layer set."""
    env = {
        "HOME": policy.workspace.mount_point,
        "USER": INSIDE_USER,
        "LOGNAME": INSIDE_USER,
        "SHELL": "/bin/sh",
        "TMPDIR": "/tmp",
    }
    env.update(policy.env.set)
    for name in policy.env.passthrough:
        if name in host_env:
            env[name] = host_env[name]
    env.update(extra)
    return env
