"""Resolving an image reference to an unpacked root filesystem (``dir:`` only until the image cache lands)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from corral.errors import InputError
from corral.policy import Policy


@dataclass(frozen=True)
class DirImage:
    rootfs: Path
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None


def resolve(policy: Policy, ref: str) -> DirImage:
    if not ref.startswith("dir:"):
        raise InputError(f"image {ref!r}: only dir:PATH references are supported here")
    root = Path(ref[4:])
    if not root.is_dir():
        raise InputError(f"image {ref!r}: {root} is not a directory")
    return DirImage(root.resolve())
