"""Reading an OCI image layout (index.json, manifests, configs) without tools: it is a few small files.

https://github.com/opencontainers/image-spec/blob/main/image-layout.md
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.errors import ImageError

REF_NAME = "org.opencontainers.image.ref.name"
_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
_DIGEST = re.compile(r"(sha256|sha512):([a-f0-9]{64}|[a-f0-9]{128})")
_BLOB_MAX = 16 * 1024 * 1024  # manifests and configs are small; refuse to read a huge one into memory


@dataclass(frozen=True)
class ImageConfig:
    """What Corral reads from an image's config blob."""

    digest: str
    env: dict[str, str]
    working_dir: str | None
    user: str | None
    os: str | None
    architecture: str | None


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(data: bytes, what: str, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImageError(f"{where}: {what} is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ImageError(f"{where}: {what} is not a JSON object")
    return obj


def read_index(layout: Path, where: str) -> dict[str, Any]:
    try:
        data = (layout / "index.json").read_bytes()
    except FileNotFoundError:
        raise ImageError(
            f"{where}: {layout} is not an OCI image layout (no index.json); make one with "
            "`skopeo copy ... oci:DIR:TAG` or `umoci init`"
        ) from None
    except OSError as exc:
        raise ImageError(f"{where}: cannot read {layout}/index.json: {exc.strerror}") from None
    return _json(data, "index.json", where)


def select_manifest(index: dict[str, Any], tag: str | None, where: str) -> dict[str, Any]:
    """The descriptor for ``tag`` in an index (no tag: the index's only image)."""
    manifests = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    if tag is None:
        if len(manifests) == 1:
            return manifests[0]
        tags = sorted(str(m.get("annotations", {}).get(REF_NAME)) for m in manifests)
        raise ImageError(
            f"{where}: the layout holds {len(manifests)} images; name one as oci:PATH:TAG (tags: {tags})"
        )
    found = [m for m in manifests if (m.get("annotations") or {}).get(REF_NAME) == tag]
    if not found:
        tags = sorted({str((m.get("annotations") or {}).get(REF_NAME)) for m in manifests})
        raise ImageError(f"{where}: no image tagged {tag!r} in the layout (tags: {tags})")
    return found[-1]


def read_blob(layout: Path, digest: str, where: str) -> bytes:
    """A blob, checked against its digest (the layout may be damaged or tampered with)."""
    m = _DIGEST.fullmatch(digest)
    if m is None:
        raise ImageError(f"{where}: {digest!r} is not a valid digest")
    path = layout / "blobs" / m.group(1) / m.group(2)
    try:
        with path.open("rb") as f:
            data = f.read(_BLOB_MAX + 1)
    except FileNotFoundError:
        raise ImageError(f"{where}: blob {digest} is missing from the layout") from None
    if len(data) > _BLOB_MAX:
        raise ImageError(f"{where}: blob {digest} is too large for a manifest or config")
    actual = hashlib.new(m.group(1), data).hexdigest()
    if actual != m.group(2):
        raise ImageError(
            f"{where}: blob {digest} does not match its digest (damaged or tampered); fetch the image again"
        )
    return data


def manifest_digest(layout: Path, tag: str | None, where: str) -> str:
    """The digest the index gives for ``tag``, after checking the manifest blob really has it.

    skopeo trusts an OCI layout's manifest blob as it finds it; a tampered manifest would be
    copied (and its layers unpacked) if it were not checked here.
    """
    desc = select_manifest(read_index(layout, where), tag, where)
    digest = desc.get("digest")
    if not isinstance(digest, str):
        raise ImageError(f"{where}: the index entry has no digest")
    read_blob(layout, digest, where)
    return digest


def read_config(layout: Path, tag: str | None, where: str) -> ImageConfig:
    """Follow index -> manifest -> config and read Env, WorkingDir, User, os and architecture."""
    desc = select_manifest(read_index(layout, where), tag, where)
    if desc.get("mediaType") in _INDEX_TYPES:
        raise ImageError(f"{where}: the entry is an image index; copy one platform's image into the layout")
    manifest = _json(read_blob(layout, str(desc.get("digest")), where), "the manifest", where)
    cdesc = manifest.get("config")
    if not isinstance(cdesc, dict) or not isinstance(cdesc.get("digest"), str):
        raise ImageError(f"{where}: the manifest names no config")
    cdigest: str = cdesc["digest"]
    config = _json(read_blob(layout, cdigest, where), "the image config", where)
    inner = config.get("config") or {}
    if not isinstance(inner, dict):
        inner = {}
    env: dict[str, str] = {}
    for item in inner.get("Env") or []:
        if isinstance(item, str) and "=" in item:
            key, _, value = item.partition("=")
            if key:
                env[key] = value
    wd = inner.get("WorkingDir")
    user = inner.get("User")
    return ImageConfig(
        digest=cdigest,
        env=env,
        working_dir=_working_dir(wd) if isinstance(wd, str) and wd else None,
        user=user if isinstance(user, str) and user else None,
        os=config.get("os") if isinstance(config.get("os"), str) else None,
        architecture=config.get("architecture") if isinstance(config.get("architecture"), str) else None,
    )


def _working_dir(wd: str) -> str:
    # Docker resolves a relative WorkingDir against "/"; ".." cannot climb above the root.
    parts: list[str] = []
    for part in wd.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)
