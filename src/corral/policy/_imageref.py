"""Image references and the ``images_allowed`` list: pure parsing and matching, no I/O.

The grammar lives here (not in ``corral.images``) so a policy can be checked at load time;
``corral.images`` re-exports ``ImageRef`` and ``parse_ref``.

References (``parse_ref``)::

    dir:/abs/rootfs                      a root filesystem directory, used as it is
    oci:/abs/layout[:TAG]                an OCI image layout (no tag: its only image)
    docker-archive:/abs/image.tar        a ``docker save`` tarball holding one image
    docker://[HOST[:PORT]/]NAME[:TAG|@sha256:HEX]   an image in a registry (tag default latest)

Docker names are normalised as Docker does (``busybox`` is ``docker.io/library/busybox:latest``).
Paths must be absolute and contain no ``:`` (skopeo splits its references on the first colon).

``images_allowed`` entries: a reference (``docker://reg/team/app`` allows every tag of that
repository, ``docker://reg/team/app:1`` that tag only, ``...@sha256:HEX`` that digest only,
``oci:/images/task`` every tag of that layout), or a prefix ending in ``/`` (``docker://reg/team/``,
``dir:/srv/rootfs/``) that allows what lies under it, matched on whole path components.
"""

from __future__ import annotations

import functools
import ipaddress
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from corral.errors import ImageError
from corral.policy._sections import _FORBIDDEN_BINDS

Transport = Literal["dir", "oci", "docker-archive", "docker"]
_LOCAL: tuple[Transport, ...] = ("dir", "oci", "docker-archive")

# distribution/reference grammar (github.com/distribution/reference, regexp.go).
_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = re.compile(rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
_NAME_MAX = 255

DOCKER_HUB = "docker.io"
# Multi-tenant public registries: anyone can publish there, so allowing the whole host is refused
# (as `*.com` is in a network allowlist); name a namespace (`docker://ghcr.io/your-org/`).
PUBLIC_REGISTRIES = frozenset(
    {
        "docker.io",
        "ghcr.io",
        "quay.io",
        "gcr.io",
        "registry.gitlab.com",
        "public.ecr.aws",
        "registry.hub.docker.com",
    }
)
# Places that are never a root filesystem to show a sandbox: they are the host itself.
_NEVER_ROOTFS_UNDER = ("/proc", "/sys", "/dev")


@dataclass(frozen=True)
class ImageRef:
    """A parsed, normalised image reference. ``str(ref)`` is its canonical text."""

    transport: Transport
    location: str  # absolute path (local transports) or "registry/repository" (docker)
    tag: str | None = None
    digest: str | None = None  # docker only: pinned manifest digest

    def __str__(self) -> str:
        if self.transport == "docker":
            return f"docker://{self.location}" + (f"@{self.digest}" if self.digest else f":{self.tag}")
        return f"{self.transport}:{self.location}" + (f":{self.tag}" if self.tag else "")

    @property
    def is_local(self) -> bool:
        return self.transport in _LOCAL

    @property
    def registry(self) -> str | None:
        return self.location.split("/", 1)[0] if self.transport == "docker" else None

    @property
    def repository(self) -> str | None:
        return self.location.split("/", 1)[1] if self.transport == "docker" else None


@functools.lru_cache(maxsize=4096)  # pure; resolve() parses the same few references over and over
def parse_ref(text: str) -> ImageRef:
    """Parse and normalise an image reference; a malformed one is an ``ImageError`` naming it."""
    ref, _ = _parse(text, default_tag=True)
    return ref


def _parse(text: str, *, default_tag: bool) -> tuple[ImageRef, bool]:
    """The reference and whether its tag was written out (entries without one match every tag)."""
    if not isinstance(text, str) or not text.strip():
        raise ImageError("an image reference must be a non-empty string")
    if any(c in text for c in "\0\n\r\t ") or text != text.strip():
        raise ImageError(f"{text!r}: image references contain no whitespace or control characters")
    if text.startswith("docker://"):
        return _parse_docker(text, text.removeprefix("docker://"), default_tag=default_tag)
    transport, sep, rest = text.partition(":")
    if not sep or transport not in _LOCAL:
        raise ImageError(
            f"{text!r}: unknown image reference; use dir:PATH, oci:PATH[:TAG], docker-archive:PATH "
            "or docker://NAME[:TAG|@DIGEST]"
        )
    path, _, tag = rest.partition(":")
    path = _abs_path(text, path)
    if transport == "oci":
        if tag and not _TAG.fullmatch(tag):
            raise ImageError(f"{text!r}: {tag!r} is not a valid tag")
        return ImageRef("oci", path, tag or None), bool(tag)
    if tag:
        raise ImageError(f"{text!r}: a {transport}: reference is a path alone (paths cannot contain ':')")
    if transport == "dir":
        _check_rootfs_dir(text, path)
    return ImageRef(transport, path), False


def _abs_path(text: str, path: str) -> str:
    if not path.startswith("/"):
        raise ImageError(f"{text!r}: the path must be absolute")
    if ".." in path.split("/"):
        raise ImageError(f"{text!r}: the path must not contain '..'")
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/")  # normpath keeps a leading "//"


def _check_rootfs_dir(text: str, path: str) -> None:
    if path in _FORBIDDEN_BINDS or any(path == p or path.startswith(p + "/") for p in _NEVER_ROOTFS_UNDER):
        raise ImageError(f"{text!r}: {path} is part of the host, not a root filesystem; refused")


def _split_docker_name(text: str, name: str) -> tuple[str, str]:
    """(domain, remainder) as Docker splits them: a first part without '.' or ':' is a Hub name."""
    first, slash, rest = name.partition("/")
    if not slash or (not any(c in first for c in ".:[") and first != "localhost" and first == first.lower()):
        domain, remainder = DOCKER_HUB, name
    else:
        domain, remainder = first, rest
    if not _DOMAIN.fullmatch(domain):
        raise ImageError(f"{text!r}: {domain!r} is not a valid registry host")
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = DOCKER_HUB
    return domain, remainder


def _parse_docker(text: str, body: str, *, default_tag: bool) -> tuple[ImageRef, bool]:
    name, at, digest = body.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        raise ImageError(f"{text!r}: {digest!r} is not a digest (sha256:<64 hex digits>)")
    # A tag follows the last ':' that is after the last '/' (a ':' before it is a port).
    tag = ""
    head, colon, tail = name.rpartition(":")
    if colon and "/" not in tail:
        name, tag = head, tail
        if not _TAG.fullmatch(tag):
            raise ImageError(f"{text!r}: {tag!r} is not a valid tag")
    if tag and at:
        raise ImageError(f"{text!r}: give a tag or a digest, not both (skopeo refuses both)")
    domain, remainder = _split_docker_name(text, name)
    components = remainder.split("/")
    for comp in components:
        if not _PATH_COMPONENT.fullmatch(comp):
            raise ImageError(
                f"{text!r}: {comp!r} is not a valid repository name component "
                "(lowercase letters, digits and . _ - separators)"
            )
    if domain == DOCKER_HUB and len(components) == 1:
        remainder = f"library/{remainder}"
    location = f"{domain}/{remainder}"
    if len(location) > _NAME_MAX:
        raise ImageError(f"{text!r}: the repository name is longer than {_NAME_MAX} characters")
    written = bool(tag)
    if not tag and not at and default_tag:
        tag = "latest"
    return ImageRef("docker", location, tag or None, digest or None), written


# --- images_allowed ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AllowEntry:
    """One parsed ``images_allowed`` entry."""

    transport: Transport
    location: str  # for a prefix: ends with "/" ("docker.io/myorg/", "/srv/rootfs/")
    prefix: bool
    tag: str | None = None
    digest: str | None = None

    def matches(self, ref: ImageRef) -> bool:
        if ref.transport != self.transport:
            return False
        if self.prefix:
            return ref.location.startswith(self.location)
        if ref.location != self.location:
            return False
        if self.digest is not None:
            return ref.digest == self.digest
        return self.tag is None or (ref.digest is None and ref.tag == self.tag)


@functools.lru_cache(maxsize=4096)
def parse_allow_entry(text: str) -> AllowEntry:
    """Parse one ``images_allowed`` entry; dangerously broad ones are refused."""
    if not isinstance(text, str) or any(c in text for c in "*?"):
        raise ImageError(f"{text!r}: wildcards are not allowed; list references or prefixes ending in '/'")
    if not text.endswith("/"):
        ref, tag_written = _parse(text, default_tag=False)
        return AllowEntry(ref.transport, ref.location, False, ref.tag if tag_written else None, ref.digest)
    if text.startswith("docker://"):
        body = text.removeprefix("docker://").rstrip("/")
        if not body:
            raise ImageError(f"{text!r}: allowing every registry is refused; name a registry and namespace")
        first, _, rest = body.partition("/")
        if any(c in first for c in ".:[") or first == "localhost" or first != first.lower():
            domain, remainder = first, rest
        else:
            domain, remainder = DOCKER_HUB, body  # "docker://myorg/" is the Hub namespace myorg
        if not _DOMAIN.fullmatch(domain):
            raise ImageError(f"{text!r}: {domain!r} is not a valid registry host")
        if domain in ("index.docker.io", "registry-1.docker.io"):
            domain = DOCKER_HUB
        for comp in remainder.split("/") if remainder else []:
            if not _PATH_COMPONENT.fullmatch(comp):
                raise ImageError(f"{text!r}: {comp!r} is not a valid repository name component")
        if not remainder and domain in PUBLIC_REGISTRIES:
            raise ImageError(
                f"{text!r}: anyone can publish to {domain}; allowing all of it is refused. "
                f"Name a namespace (docker://{domain}/yourorg/) or pin images by digest"
            )
        location = f"{domain}/" + (f"{remainder}/" if remainder else "")
        return AllowEntry("docker", location, True)
    transport, sep, rest = text.partition(":")
    if not sep or transport not in _LOCAL:
        raise ImageError(
            f"{text!r}: unknown image reference prefix; use dir:/, oci:/, docker-archive:/ or docker://"
        )
    if ":" in rest:
        raise ImageError(f"{text!r}: a path prefix cannot contain ':'")
    path = _abs_path(text, rest)
    if path == "/":
        raise ImageError(f"{text!r}: allowing every path on the host is refused; name a directory")
    if transport == "dir":
        _check_rootfs_dir(text, path)
    return AllowEntry(transport, path.rstrip("/") + "/", True)


def image_allowed(ref: ImageRef, allowed: Iterable[str]) -> bool:
    """Whether ``ref`` matches an entry (by its text; ``corral.images`` also checks real paths)."""
    return any(parse_allow_entry(entry).matches(ref) for entry in allowed)


def check_loopback_registry(text: str) -> str:
    """A ``HOST:PORT`` whose host is a loopback address: the only registries pulled without TLS checks."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ImageError(f"{text!r}: expected HOST:PORT (a loopback registry such as 127.0.0.1:5000)")
    bare = host.strip("[]")
    try:
        loopback = bare == "localhost" or ipaddress.ip_address(bare).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ImageError(
            f"{text!r}: only loopback registries may skip TLS verification; "
            "give other registries a certificate (see /etc/containers/certs.d)"
        )
    return text
