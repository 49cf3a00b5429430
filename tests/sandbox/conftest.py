from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral import Policy, Sandbox
from images_support import busybox_image

MiB = 1024 * 1024


@pytest.fixture
def policy() -> Policy:
    # Detection off: these tests prove the kernel-level confinement on its own, so no rule may
    # block the hostile commands before they meet it.
    return Policy.default().with_overrides(
        resources={"memory_max_bytes": 128 * MiB, "pids_max": 64, "wall_timeout_s": 20},
        workspace={"size_max_bytes": 64 * MiB},
        detection={"enabled": False},
    )


@pytest.fixture
def sb(policy: Policy) -> Iterator[Sandbox]:
    with Sandbox(policy) as s:
        yield s


__all__ = ["busybox_image"]
