"""Policy sections for the sandbox itself: workspace, filesystem, resources, processes, programs."""

from __future__ import annotations

import posixpath
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from corral.policy._base import Section

GiB = 1024**3
MiB = 1024**2

# Host paths that must never be bound into a sandbox: they hand out the host.
_FORBIDDEN_BINDS = (
    "/",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/run",
    "/root",
    "/home",
    "/boot",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/kubelet",
)
_FORBIDDEN_SUBSTRINGS = ("docker.sock", "containerd.sock", "crio.sock", "kubelet.sock", "podman.sock")


def _absolute(p: str) -> str:
    if not p.startswith("/"):
        raise ValueError(f"must be an absolute path, got {p!r}")
    norm = posixpath.normpath(p)
    if ".." in norm.split("/"):
        raise ValueError(f"must not contain '..', got {p!r}")
    return norm


AbsPath = Annotated[str, AfterValidator(_absolute)]


def _safe_bind(p: str) -> str:
    p = _absolute(p)
    if p in _FORBIDDEN_BINDS:
        raise ValueError(f"binding {p} into a sandbox would expose the host; refused")
    if any(s in p for s in _FORBIDDEN_SUBSTRINGS):
        raise ValueError(f"{p} is a host control socket; refused")
    return p


SafeBind = Annotated[str, AfterValidator(_safe_bind)]


class WorkspaceSection(Section):
    """The only writable place a tool call sees; it persists across the calls of one sandbox."""

    template: AbsPath | None = Field(
        default=None,
        description="Host directory copied on write into every sandbox's workspace (the agent sees and "
        "edits it, owned by the agent; the host directory never changes). Null: an empty workspace. "
        "A sandbox's own `workspace=` argument takes precedence.",
    )
    writable_host_path: AbsPath | None = Field(
        default=None,
        description="DANGEROUS: a host directory the agent writes in place (shown as the agent's; files it "
        "creates belong to the directory's owner on the host). Prefer `template`.",
    )
    size_max_bytes: int = Field(
        default=1 * GiB, gt=0, description="Capacity of the workspace (or of its copy-on-write layer)."
    )
    mount_point: AbsPath = Field(default="/workspace", description="Where the workspace appears inside.")

    @field_validator("mount_point")
    @classmethod
    def _not_system(cls, v: str) -> str:
        if v in ("/", "/usr", "/etc", "/bin", "/lib", "/proc", "/dev", "/sys", "/tmp"):
            raise ValueError(f"{v} cannot be the workspace mount point")
        return v

    @field_validator("template", "writable_host_path")
    @classmethod
    def _safe_host(cls, v: str | None) -> str | None:
        return None if v is None else _safe_bind(v)

    @model_validator(mode="after")
    def _one_source(self) -> WorkspaceSection:
        if self.template is not None and self.writable_host_path is not None:
            raise ValueError("set either template or writable_host_path, not both")
        return self


DEFAULT_RO_BINDS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc")
DEFAULT_HIDDEN = (
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/corral",
)


class FilesystemSection(Section):
    read_only_binds: tuple[SafeBind, ...] = Field(
        default=DEFAULT_RO_BINDS,
        description="Host paths visible read-only inside (missing ones are skipped).",
    )
    hidden_paths: tuple[AbsPath, ...] = Field(
        default=DEFAULT_HIDDEN,
        description="Paths under the binds that are masked (empty dir or empty file).",
    )
    tmp_size_max_bytes: int = Field(default=256 * MiB, gt=0, description="Capacity of the private /tmp.")
    image_root: Literal["read_only", "copy_on_write"] = Field(
        default="read_only",
        description="With an image: `read_only` keeps its root filesystem read-only (only the workspace and "
        "/tmp are writable); `copy_on_write` gives each sandbox a private writable copy in which the "
        "image's root-owned files appear as the agent's (no capability is granted; the image cache and other "
        "sandboxes never see the changes).",
    )


class ResourcesSection(Section):
    memory_max_bytes: int = Field(default=1 * GiB, ge=16 * MiB)
    cpu_quota_cores: float = Field(default=1.0, gt=0, le=1024)
    pids_max: int = Field(default=256, ge=8)
    wall_timeout_s: float = Field(default=60.0, gt=0, le=86400)
    output_max_bytes: int = Field(default=1 * MiB, ge=1024, description="Per stream; the rest is discarded.")
    kill_on_pids_limit: bool = Field(
        default=True, description="Stop the call as soon as it hits the pids limit (fork bombs)."
    )


class ProcessesSection(Section):
    lifetime: Literal["call", "episode"] = Field(
        default="call",
        description="`call`: every process a call starts dies when the call returns, and each call has its "
        "own pid namespace and /tmp. `episode`: processes may outlive their call (a server started in one "
        "call answers the next) but never the sandbox; calls share its pid namespace, loopback and /tmp, "
        "stay in its cgroups and limits, and are still monitored.",
    )


class FilesSection(Section):
    """What the trainer may move in and out of a sandbox with write_file/read_file/upload/download."""

    file_max_bytes: int = Field(default=64 * MiB, gt=0, description="Largest single file in or out.")
    transfer_max_bytes: int = Field(
        default=1 * GiB, gt=0, description="Most bytes one upload or download may move in total."
    )
    entries_max: int = Field(
        default=100_000, gt=0, description="Most files and directories one transfer or listing may hold."
    )
    read_paths: tuple[AbsPath, ...] = Field(
        default=(),
        description="Absolute paths outside the workspace that may be read (e.g. an image's /testbed). "
        "Relative paths are always inside the workspace.",
    )
    write_paths: tuple[AbsPath, ...] = Field(
        default=(),
        description="Absolute paths outside the workspace that may be written (needs a writable root).",
    )

    @field_validator("read_paths", "write_paths")
    @classmethod
    def _not_kernel(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            if p == "/" or any(p == k or p.startswith(k + "/") for k in ("/proc", "/sys", "/dev")):
                raise ValueError(f"{p}: file transfers never touch /, /proc, /sys or /dev")
        return v


class ProgramsSection(Section):
    allow: tuple[str, ...] | None = Field(
        default=None,
        description="If set, only these executables can run (names looked up on the sandbox PATH, or "
        "absolute paths). Enforced by the kernel: only these binaries are mounted, "
        "and Landlock denies execution of anything else.",
    )

    @field_validator("allow")
    @classmethod
    def _names(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("an empty allowlist would forbid every program; use null for no allowlist")
        for name in v:
            if name in ("*", "") or any(c in name for c in "*?[]"):
                raise ValueError(f"{name!r}: wildcards are not allowed in the program allowlist")
        return v


DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


class EnvSection(Section):
    set: dict[str, str] = Field(
        default_factory=lambda: {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8", "TERM": "dumb"},
        description="Environment of every call; the host environment is never inherited.",
    )
    passthrough: tuple[str, ...] = Field(
        default=(), description="Names copied from the harness environment (never secrets)."
    )

    @model_validator(mode="after")
    def _no_secret_passthrough(self) -> EnvSection:
        for name in self.passthrough:
            up = name.upper()
            if any(s in up for s in ("SECRET", "TOKEN", "PASSWORD", "KEY", "CREDENTIAL", "AWS_", "SSH_AUTH")):
                raise ValueError(f"passing {name} into a sandbox would leak a credential; refused")
        return self


class IdentitySection(Section):
    """Host uids given to sandboxes: each live sandbox holds one uid of this range alone."""

    uid_range_start: int = Field(default=200_000, ge=1000)
    uid_range_size: int = Field(default=60_000, ge=1, le=1_000_000)


class StoreSection(Section):
    path: str | None = Field(
        default=None, description="Event store file. Null: $CORRAL_HOME/events.db (default ~/.corral)."
    )
