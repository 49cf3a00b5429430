"""The node's image cache: images pulled with skopeo, unpacked with umoci, keyed by config digest.

Layout under the root (mode 0700; only the runtime, as root, reads it and bind-mounts rootfs)::

    images/sha256-HEX/rootfs/      an unpacked root filesystem, never modified once published
    images/sha256-HEX/image.json   its digest, Env, WorkingDir, User, size
    refs/KEY.json                  a reference's last pull: its digest and its source's identity
    locks/                         flock files: one per reference (pulls), one per digest (unpack, rm)
    tmp/NAME/ + tmp/NAME.lock      work in progress; a dead owner's leftovers are swept by the next pull

An image is unpacked into ``tmp/`` and published by one ``rename`` into ``images/``, so a
reader sees a whole entry or none. Concurrent pulls of one reference wait on its lock and the
second one finds the first one's result; two references to one image unpack it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import stat
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from corral.errors import ImageError, ImageNotAllowedError
from corral.images._harden import harden_rootfs
from corral.images._layout import digest_of, manifest_digest, read_config
from corral.images._locks import lock_shared, locked, sweep, try_lock, work_dir
from corral.images._model import CachedImage, Image, ImageLease
from corral.images._tools import run_tool
from corral.policy import Policy
from corral.policy._imageref import (
    AllowEntry,
    ImageRef,
    _check_rootfs_dir,
    check_loopback_registry,
    parse_allow_entry,
    parse_ref,
)

META = "image.json"
_INSPECT_TIMEOUT_S = 120.0
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}
_HINTS = {
    "docker": "check the name and tag, that the registry is reachable from this node, "
    "and its credentials (skopeo login HOST)",
    "oci": "check that the path is an OCI image layout (index.json, blobs/) holding that tag",
    "docker-archive": "check that the file is a `docker save` tarball of one image",
}


def default_cache_dir() -> Path:
    return Path(os.environ.get("CORRAL_HOME") or "~/.corral").expanduser() / "images"


class ImageCache:
    """Pull, unpack, list and remove images on this node; hand out read-only root filesystems."""

    def __init__(
        self,
        root: Path | str,
        *,
        insecure_registries: Iterable[str] = (),
        lock_timeout_s: float = 900.0,
        pull_timeout_s: float = 3600.0,
    ) -> None:
        self.root = Path(root).expanduser().absolute()
        try:
            self._insecure = frozenset(check_loopback_registry(r) for r in insecure_registries)
        except ImageError as exc:
            raise ImageError(f"insecure_registries: {exc}") from None
        self._lock_timeout_s = lock_timeout_s
        self._pull_timeout_s = pull_timeout_s
        self._images = self.root / "images"
        self._refs = self.root / "refs"
        self._locks = self.root / "locks"
        self._tmp = self.root / "tmp"
        self._ready = False

    @classmethod
    def for_policy(cls, policy: Policy) -> ImageCache:
        """The cache a policy names (``environment.image_cache``, default ``$CORRAL_HOME/images``)."""
        env = policy.environment
        root = Path(env.image_cache) if env.image_cache else default_cache_dir()
        return cls(root, insecure_registries=env.insecure_registries)

    # --- the runtime's calls -----------------------------------------------------------------

    def resolve(self, ref: str | ImageRef, *, allowed: Iterable[str]) -> Image:
        """The image for ``ref``, pulled and unpacked if the cache lacks it.

        ``allowed`` (the policy's ``images_allowed``) is checked first, before anything is read
        or fetched. A ``docker://`` tag already in the cache is used without asking the
        registry (``pull`` refreshes it); ``oci:`` and ``docker-archive:`` sources are re-read
        when they changed.
        """
        r = _as_ref(ref)
        check_allowed(r, allowed)
        if r.transport == "dir":
            return _dir_image(r)
        cached = self._cached(r)
        return cached if cached is not None else self._pull(r, refresh=False)

    def pull(self, ref: str | ImageRef) -> Image:
        """Fetch ``ref`` again from its source (a no-op when the source still has the same image)."""
        r = _as_ref(ref)
        if r.transport == "dir":
            return _dir_image(r)
        return self._pull(r, refresh=True)

    def lease(self, image: Image) -> ImageLease:
        """Hold ``image`` for a live sandbox: ``rm`` refuses to delete it until the lease is closed.

        Raises ImageError if the image was removed since it was resolved (resolve it again).
        """
        if image.digest is None:
            return ImageLease(image, None)  # dir: is the user's own directory, never deleted by Corral
        entry = image.rootfs.parent
        if entry.parent != self._images:
            raise ImageError(f"{image.ref}: {image.rootfs} is not in the image cache at {self.root}")
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ImageError(f"{image.ref}: removed from the image cache; resolve it again") from None
        lock_shared(fd)  # waits only while an rm is renaming the entry away
        try:
            same = os.stat(entry).st_ino == os.fstat(fd).st_ino and (entry / META).is_file()
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            raise ImageError(f"{image.ref}: removed from the image cache; resolve it again")
        return ImageLease(image, fd)

    # --- the operator's calls ----------------------------------------------------------------

    def ls(self) -> list[CachedImage]:
        if not self._images.is_dir():
            return []
        refs: dict[str, list[str]] = {}
        for mapping in self._mappings():
            refs.setdefault(str(mapping.get("digest")), []).append(str(mapping.get("ref")))
        out: list[CachedImage] = []
        for entry in sorted(self._images.iterdir()):
            meta = _read_json(entry / META)
            if meta is None:
                continue
            digest = str(meta.get("digest"))
            out.append(
                CachedImage(
                    digest=digest,
                    refs=tuple(sorted(refs.get(digest, []))),
                    rootfs=entry / "rootfs",
                    size_bytes=int(meta.get("size_bytes") or 0),
                    unpacked_at=float(meta.get("unpacked_at") or 0.0),
                    in_use=_in_use(entry),
                )
            )
        return out

    def rm(self, ref: str | ImageRef) -> list[str]:
        """Forget a reference, and delete its image when no other reference needs it.

        ``ref`` may also be a digest (``sha256:HEX``): that image and every reference to it go.
        Returns the digests deleted. An image a live sandbox holds (``lease``) is refused.
        """
        self._ensure_dirs()
        sweep(self._tmp)
        if isinstance(ref, str) and _DIGEST.fullmatch(ref):
            if not self._remove_entry(ref, ref):
                raise ImageError(f"{ref}: no such image in the cache at {self.root} (see `corral image ls`)")
            for mapping in self._mappings():
                if mapping.get("digest") == ref:
                    self._mapping_path(str(mapping.get("ref"))).unlink(missing_ok=True)
            return [ref]
        r = _as_ref(ref)
        if r.transport == "dir":
            raise ImageError(f"{r}: dir: images are used in place and never cached; nothing to remove")
        with locked(self._ref_lock(r), timeout_s=self._lock_timeout_s, what=str(r)):
            found = _read_json(self._mapping_path(str(r)))
            if found is None:
                raise ImageError(f"{r}: not in the image cache at {self.root} (see `corral image ls`)")
            digest = str(found.get("digest"))
            shared = any(m.get("digest") == digest and m.get("ref") != str(r) for m in self._mappings())
            removed = [] if shared else [digest] if self._remove_entry(digest, str(r)) else []
            self._mapping_path(str(r)).unlink(missing_ok=True)
        return removed

    # --- internals ---------------------------------------------------------------------------

    def _ensure_dirs(self) -> None:
        if self._ready:
            return
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = os.stat(self.root)
        if st.st_uid != os.geteuid():
            raise ImageError(
                f"image cache {self.root} belongs to uid {st.st_uid}, not {os.geteuid()}; "
                "another user could swap its images; use a cache directory of your own"
            )
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(self.root, 0o700)
        for d in (self._images, self._refs, self._locks, self._tmp):
            d.mkdir(mode=0o700, exist_ok=True)
        self._ready = True

    def _mapping_path(self, ref_text: str) -> Path:
        return self._refs / f"{_key(ref_text)}.json"

    def _ref_lock(self, r: ImageRef) -> Path:
        return self._locks / f"ref-{_key(str(r))}.lock"

    def _entry(self, digest: str) -> Path:
        return self._images / digest.replace(":", "-")

    def _mappings(self) -> list[dict[str, Any]]:
        if not self._refs.is_dir():
            return []
        return [m for p in self._refs.glob("*.json") if (m := _read_json(p)) is not None]

    def _image(self, r: ImageRef, mapping: dict[str, Any]) -> Image | None:
        digest = str(mapping.get("digest"))
        entry = self._entry(digest)
        meta = _read_json(entry / META)
        if meta is None:
            return None
        env = meta.get("env") or {}
        return Image(
            ref=r,
            digest=digest,
            rootfs=entry / "rootfs",
            env=MappingProxyType({str(k): str(v) for k, v in env.items()}),
            working_dir=meta.get("working_dir"),
            user=meta.get("user"),
            source_digest=mapping.get("source_digest"),
            size_bytes=meta.get("size_bytes"),
        )

    def _cached(self, r: ImageRef) -> Image | None:
        """The cached image for ``r`` if its source has not changed since it was pulled (no network)."""
        mapping = _read_json(self._mapping_path(str(r)))
        if mapping is None:
            return None
        if r.transport != "docker":
            current = _local_source(r, missing_ok=True)
            if current[0] and current[0] != mapping.get("source"):
                return None  # the layout or archive changed since: pull it again
        return self._image(r, mapping)

    def _pull(self, r: ImageRef, *, refresh: bool) -> Image:
        self._ensure_dirs()
        sweep(self._tmp)
        mapping_path = self._mapping_path(str(r))
        before = _mtime_ns(mapping_path)
        with locked(self._ref_lock(r), timeout_s=self._lock_timeout_s, what=str(r)):
            # Whoever held the lock may just have pulled this very reference: use their result.
            if not refresh or _mtime_ns(mapping_path) != before:
                cached = self._cached(r)
                if cached is not None:
                    return cached
            source, source_digest = self._source(r)
            mapping = _read_json(mapping_path)
            if mapping is not None and mapping.get("source") == source:
                cached = self._image(r, mapping)
                if cached is not None:
                    return cached
            with work_dir(self._tmp) as (work, live_fd), self._source_lock(r, source_digest):
                digest = self._known_digest(source_digest) or self._fetch(r, source, work, live_fd)
                new = {
                    "ref": str(r),
                    "digest": digest,
                    "source": source,
                    "source_digest": source_digest,
                    "pulled_at": time.time(),
                }
                _write_json(work / "mapping.json", new)
                os.replace(work / "mapping.json", mapping_path)
        image = self._image(r, new)
        if image is None:  # removed between publishing and now
            raise ImageError(f"{r}: removed from the image cache while being pulled; pull it again")
        return image

    def _source(self, r: ImageRef) -> tuple[str, str | None]:
        """The identity of what ``r`` names at its source now, and its manifest digest if it has one."""
        if r.transport != "docker":
            return _local_source(r)
        if r.digest is not None:
            return r.digest, r.digest
        raw = run_tool(
            "skopeo",
            ["inspect", "--raw", *self._tls(r, "inspect"), f"docker://{r.location}:{r.tag}"],
            ref=str(r),
            what="reading the manifest from the registry",
            hint=_HINTS["docker"],
            timeout_s=min(self._pull_timeout_s, _INSPECT_TIMEOUT_S),
        )
        digest = digest_of(raw)
        return digest, digest

    def _source_lock(self, r: ImageRef, source_digest: str | None) -> AbstractContextManager[object]:
        """Serialise pulls of one manifest under different references (a tag and its digest): the
        second finds the first's result through ``_known_digest`` instead of fetching again."""
        if source_digest is None:
            return nullcontext()
        lock = self._locks / f"src-{source_digest.replace(':', '-')}.lock"
        return locked(lock, timeout_s=self._lock_timeout_s, what=f"{r} ({source_digest})")

    def _known_digest(self, source_digest: str | None) -> str | None:
        """The config digest of an already unpacked image with this manifest digest (another tag of it)."""
        if source_digest is None:
            return None
        for m in self._mappings():
            if (
                m.get("source_digest") == source_digest
                and (self._entry(str(m.get("digest"))) / META).is_file()
            ):
                return str(m.get("digest"))
        return None

    def _tls(self, r: ImageRef, command: str) -> list[str]:
        if r.transport != "docker" or r.registry not in self._insecure:
            return []
        return ["--tls-verify=false"] if command == "inspect" else ["--src-tls-verify=false"]

    def _fetch(self, r: ImageRef, source: str, work: Path, live_fd: int) -> str:
        """Copy the image into a private layout, unpack it, harden it, publish it; return its digest."""
        layout = work / "layout"
        if r.transport == "docker":
            src = f"docker://{r.location}@{source}"  # pinned: the tag cannot move under the copy
        elif r.transport == "oci":
            src = f"oci:{r.location}" + (f":{r.tag}" if r.tag else "")
        else:
            src = f"docker-archive:{r.location}"
        run_tool(
            "skopeo",
            ["copy", "--quiet", *self._tls(r, "copy"), src, f"oci:{layout}:img"],
            ref=str(r),
            what="copying the image",
            hint=_HINTS[r.transport],
            timeout_s=self._pull_timeout_s,
            pass_fds=(live_fd,),
        )
        if r.transport != "docker" and _local_source(r)[0] != source:
            raise ImageError(f"{r}: the source changed while it was being pulled; pull it again")
        config = read_config(layout, "img", str(r))
        _check_platform(r, config.os, config.architecture)
        entry = self._entry(config.digest)
        with locked(
            self._locks / f"img-{entry.name}.lock",
            timeout_s=self._lock_timeout_s,
            what=f"{r} ({config.digest})",
        ):
            if (entry / META).is_file():
                return config.digest  # another reference to the same image unpacked it already
            stage = work / "entry"
            stage.mkdir(mode=0o700)
            run_tool(
                "umoci",
                [
                    "raw",
                    "unpack",
                    *(["--rootless"] if os.geteuid() != 0 else []),
                    "--image",
                    f"{layout}:img",
                    str(stage / "rootfs"),
                ],
                ref=str(r),
                what="unpacking the image's layers",
                hint="a layer is corrupt or of a kind umoci cannot unpack",
                timeout_s=self._pull_timeout_s,
                pass_fds=(live_fd,),
            )
            report = harden_rootfs(stage / "rootfs")
            meta = {
                "digest": config.digest,
                "env": config.env,
                "working_dir": config.working_dir,
                "user": config.user,
                "os": config.os,
                "architecture": config.architecture,
                "size_bytes": report.size_bytes,
                "files": report.files,
                "hardened": {
                    "devices_removed": report.devices_removed,
                    "setid_cleared": report.setid_cleared,
                    "xattrs_removed": report.xattrs_removed,
                },
                "unpacked_at": time.time(),
            }
            _write_json(stage / META, meta)
            if entry.exists():  # an entry without metadata is not ours to trust: set it aside
                os.rename(entry, work / "stale")
            os.rename(stage, entry)  # publish: atomic, whole or not at all
        return config.digest

    def _remove_entry(self, digest: str, what: str) -> bool:
        entry = self._entry(digest)
        with locked(self._locks / f"img-{entry.name}.lock", timeout_s=self._lock_timeout_s, what=what):
            try:
                fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                return False
            with work_dir(self._tmp) as (work, _):
                try:
                    if not _lock_exclusive(fd):
                        raise ImageError(
                            f"{what}: in use by a live sandbox; close it first, then remove the image"
                        )
                    os.rename(entry, work / "removed")  # gone at once; deleted on leaving work_dir
                finally:
                    os.close(fd)
        return True


def check_allowed(ref: str | ImageRef, allowed: Iterable[str]) -> None:
    """Refuse ``ref`` unless an ``images_allowed`` entry matches it, by its text and by its real path."""
    r = _as_ref(ref)
    allowed = tuple(allowed)
    try:
        entries = [parse_allow_entry(e) for e in allowed]
    except ImageError as exc:
        raise ImageError(f"environment.images_allowed: {exc}") from None
    if not any(e.matches(r) for e in entries):
        shown = list(allowed) or "empty: no image may be used"
        raise ImageNotAllowedError(
            f"{r}: not in environment.images_allowed ({shown}); add it, or a prefix of it ending in '/', "
            "to the policy"
        )
    if r.is_local:
        real = os.path.realpath(r.location)
        if real != r.location and not any(_real(e).matches(replace(r, location=real)) for e in entries):
            raise ImageNotAllowedError(
                f"{r}: resolves (through a symlink) to {real}, which is not in environment.images_allowed"
            )


def _real(e: AllowEntry) -> AllowEntry:
    if e.transport == "docker":
        return e
    if e.prefix:
        return replace(e, location=os.path.realpath(e.location.rstrip("/")).rstrip("/") + "/")
    return replace(e, location=os.path.realpath(e.location))


def _as_ref(ref: str | ImageRef) -> ImageRef:
    return ref if isinstance(ref, ImageRef) else parse_ref(ref)


def _dir_image(r: ImageRef) -> Image:
    real = os.path.realpath(r.location)
    if not os.path.isdir(real):
        raise ImageError(
            f"{r}: {r.location} is not a directory; a dir: image is an unpacked root filesystem directory"
        )
    try:
        _check_rootfs_dir(str(r), real)
    except ImageError as exc:
        raise ImageNotAllowedError(str(exc)) from None
    return Image(ref=r, digest=None, rootfs=Path(real))


def _local_source(r: ImageRef, *, missing_ok: bool = False) -> tuple[str, str | None]:
    """(identity, manifest digest) of an oci: layout or docker-archive: file as it is now.

    With ``missing_ok``, a source that is gone gives ("", None): the cached copy still serves.
    """
    path = Path(r.location)
    if r.transport == "oci":
        if missing_ok and not (path / "index.json").exists():
            return "", None
        digest = manifest_digest(path, r.tag, str(r))
        return f"oci:{digest}", digest
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if missing_ok:
            return "", None
        raise ImageError(f"{r}: {path} does not exist; {_HINTS['docker-archive']}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{r}: {path} is not a file; {_HINTS['docker-archive']}")
    return f"file:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}", None


def _check_platform(r: ImageRef, os_name: str | None, arch: str | None) -> None:
    host = _GOARCH.get(platform.machine(), platform.machine())
    if os_name not in (None, "linux"):
        raise ImageError(f"{r}: the image is for {os_name}, not linux")
    if arch not in (None, host):
        raise ImageError(f"{r}: the image is for {arch}, this node is {host}; pull an image built for {host}")


def _in_use(entry: Path) -> bool:
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        return not try_lock(fd)  # the probe lock is dropped at once by closing
    finally:
        os.close(fd)


def _lock_exclusive(fd: int, attempts: int = 10) -> bool:
    # A listing probes each entry with a brief exclusive lock; retry past it before calling it in use.
    for _ in range(attempts):
        if try_lock(fd):
            return True
        time.sleep(0.02)
    return False


def _key(ref_text: str) -> str:
    return hashlib.sha256(ref_text.encode()).hexdigest()[:32]


def _mtime_ns(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with path.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
