"""What the cache hands out: an unpacked image, a listing row, and a lease that pins an image."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from corral.policy._imageref import ImageRef


@dataclass(frozen=True)
class Image:
    """An image ready to be a sandbox's root filesystem.

    ``rootfs`` is bind-mounted read-only by the runtime and never changes once published.
    ``env`` and ``working_dir`` come from the image config and apply to calls; ``user`` is
    for information only (calls always run as the sandbox's own non-root host uid).
    """

    ref: ImageRef
    digest: str | None  # the config's digest (the image id); None for dir:, which has no config
    rootfs: Path
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    working_dir: str | None = None
    user: str | None = None
    source_digest: str | None = None  # the manifest digest at the source, for pinning (docker://, oci:)
    size_bytes: int | None = None


@dataclass(frozen=True)
class CachedImage:
    """One unpacked image in the cache, with every reference that resolves to it."""

    digest: str
    refs: tuple[str, ...]
    rootfs: Path
    size_bytes: int
    unpacked_at: float  # epoch seconds
    in_use: bool  # a live sandbox holds a lease on it


class ImageLease:
    """Holds an image so that ``ImageCache.rm`` cannot delete it under a live sandbox.

    A shared flock on the image's cache entry: any number of sandboxes share one image; rm
    needs the lock exclusively. The kernel drops it when the holder exits, however it exits.
    """

    def __init__(self, image: Image, fd: int | None) -> None:
        self.image = image
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ImageLease:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
