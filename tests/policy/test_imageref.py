"""Image references and images_allowed entries: parsing, normalisation and matching, as tables."""

from __future__ import annotations

import pytest

from corral.errors import ImageError
from corral.images import ImageRef, image_allowed, parse_ref
from corral.policy._imageref import check_loopback_registry, parse_allow_entry

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("dir:/srv/rootfs", "dir:/srv/rootfs"),
        ("dir:/srv//rootfs/./", "dir:/srv/rootfs"),
        ("oci:/images/task", "oci:/images/task"),
        ("oci:/images/task:1.2-rc_3", "oci:/images/task:1.2-rc_3"),
        ("docker-archive:/data/image.tar", "docker-archive:/data/image.tar"),
        ("docker://busybox", "docker://docker.io/library/busybox:latest"),
        ("docker://busybox:1.36", "docker://docker.io/library/busybox:1.36"),
        ("docker://myorg/app", "docker://docker.io/myorg/app:latest"),
        ("docker://index.docker.io/library/python:3.11", "docker://docker.io/library/python:3.11"),
        ("docker://registry.local/swe/task-1234:latest", "docker://registry.local/swe/task-1234:latest"),
        ("docker://127.0.0.1:5000/a/b:v1", "docker://127.0.0.1:5000/a/b:v1"),
        ("docker://localhost/x", "docker://localhost/x:latest"),
        ("docker://[::1]:5000/x:1", "docker://[::1]:5000/x:1"),
        (f"docker://reg.io:443/ns/app@{D}", f"docker://reg.io:443/ns/app@{D}"),
        ("docker://ghcr.io/org/a__b.c-d/e:tag", "docker://ghcr.io/org/a__b.c-d/e:tag"),
    ],
)
def test_references_are_normalised(text: str, canonical: str) -> None:
    ref = parse_ref(text)
    assert str(ref) == canonical
    assert parse_ref(str(ref)) == ref  # the canonical text parses to the same reference


def test_reference_parts() -> None:
    ref = parse_ref("docker://registry.local:5000/swe/task:7")
    assert ref == ImageRef("docker", "registry.local:5000/swe/task", "7", None)
    assert (ref.registry, ref.repository, ref.is_local) == ("registry.local:5000", "swe/task", False)
    assert parse_ref(f"docker://busybox@{D}").tag is None
    assert parse_ref("oci:/x").tag is None and parse_ref("oci:/x").is_local


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "non-empty"),
        ("busybox", "unknown image reference"),
        ("podman:/x", "unknown image reference"),
        ("oci:relative/layout", "must be absolute"),
        ("oci:/a/../etc", "must not contain '..'"),
        ("oci:/x:bad tag", "whitespace"),
        ("oci:/x:-bad", "not a valid tag"),
        ("dir:/x:tag", "a path alone"),
        ("docker-archive:/a.tar:ref", "a path alone"),
        ("dir:/", "part of the host"),
        ("dir:/proc/1/root", "part of the host"),
        ("dir:/dev", "part of the host"),
        ("dir:/home", "part of the host"),
        ("docker://", "not a valid repository name component"),
        ("docker://reg.io/Upper/x", "not a valid repository name component"),
        ("docker://reg.io/a//b", "not a valid repository name component"),
        ("docker://reg.io/x:t@" + D, "not both"),
        ("docker://reg.io/x@sha256:abc", "is not a digest"),
        ("docker://reg.io/x:" + "t" * 129, "not a valid tag"),
        ("docker://-bad.io/x", "not a valid registry host"),
        ("docker://reg.io/x\n", "whitespace"),
        ("docker://reg.io/" + "a" * 300, "longer than 255"),
    ],
)
def test_bad_references_name_themselves(text: str, message: str) -> None:
    with pytest.raises(ImageError) as info:
        parse_ref(text)
    assert message in str(info.value)
    if text:
        assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("entry", "ref", "allowed"),
    [
        # Prefixes match whole path components.
        ("docker://registry.local/swe/", "docker://registry.local/swe/task-1:latest", True),
        ("docker://registry.local/swe/", "docker://registry.local/swe/deep/task:1", True),
        ("docker://registry.local/swe/", "docker://registry.local/swe-evil/task:1", False),
        ("docker://registry.local/swe/", "docker://registry.local/swe", False),
        ("docker://registry.local/swe/", "docker://evil.local/swe/task:1", False),
        ("docker://registry.local/", "docker://registry.local/anything:1", True),
        ("docker://registry.local/", "docker://registry.local:5000/anything:1", False),
        ("docker://myorg/", "docker://myorg/app:1", True),
        ("docker://myorg/", "docker://docker.io/myorg/app@" + D, True),
        ("docker://docker.io/library/", "docker://python:3.11", True),
        ("docker://docker.io/library/", "docker://evil/python:3.11", False),
        # A repository without tag allows every tag and digest of it; a tag or digest only itself.
        ("docker://busybox", "docker://docker.io/library/busybox:1.36", True),
        ("docker://busybox", f"docker://busybox@{D}", True),
        ("docker://busybox", "docker://busybox2:1", False),
        ("docker://busybox:1.36", "docker://busybox:1.36", True),
        ("docker://busybox:1.36", "docker://busybox:latest", False),
        ("docker://busybox:1.36", f"docker://busybox@{D}", False),
        (f"docker://busybox@{D}", f"docker://busybox@{D}", True),
        (f"docker://busybox@{D}", "docker://busybox:latest", False),
        (f"docker://busybox@{D}", "docker://busybox@sha256:" + "b" * 64, False),
        ("docker://busybox:latest", "docker://busybox", True),
        # Local paths.
        ("oci:/data/images/", "oci:/data/images/task:1", True),
        ("oci:/data/images/", "oci:/data/images-evil/task:1", False),
        ("oci:/data/images/", "dir:/data/images/task", False),
        ("oci:/data/images/task", "oci:/data/images/task:any", True),
        ("oci:/data/images/task:1", "oci:/data/images/task:2", False),
        ("oci:/data/images/task:1", "oci:/data/images/task", False),
        ("dir:/srv/rootfs/", "dir:/srv/rootfs/a", True),
        ("dir:/srv/rootfs/", "dir:/srv/rootfs", False),
        ("dir:/srv/rootfs", "dir:/srv/rootfs", True),
        ("docker-archive:/data/a.tar", "docker-archive:/data/a.tar", True),
        ("docker-archive:/data/", "docker-archive:/data/x/a.tar", True),
    ],
)
def test_allow_entries(entry: str, ref: str, allowed: bool) -> None:
    assert image_allowed(parse_ref(ref), [entry]) is allowed


def test_empty_allowlist_allows_nothing() -> None:
    assert not image_allowed(parse_ref("docker://busybox"), [])
    assert not image_allowed(parse_ref("dir:/srv/rootfs"), [])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("*", "wildcards are not allowed"),
        ("docker://registry.local/*", "wildcards are not allowed"),
        ("docker://", "allowing every registry is refused"),
        ("docker:///", "allowing every registry is refused"),
        ("docker://docker.io/", "anyone can publish to docker.io"),
        ("docker://index.docker.io/", "anyone can publish to docker.io"),
        ("docker://ghcr.io/", "anyone can publish to ghcr.io"),
        ("docker://quay.io/", "anyone can publish to quay.io"),
        ("dir:/", "allowing every path on the host is refused"),
        ("oci:/", "allowing every path on the host is refused"),
        ("oci://", "allowing every path on the host is refused"),
        ("dir:/proc/", "part of the host"),
        ("oci:relative/", "must be absolute"),
        ("oci:/a:b/", "cannot contain ':'"),
        ("ftp:/x/", "unknown image reference prefix"),
        ("docker://reg.io/Bad/", "not a valid repository name component"),
    ],
)
def test_dangerously_broad_or_malformed_entries_are_refused(entry: str, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        parse_allow_entry(entry)


@pytest.mark.parametrize("good", ["127.0.0.1:5000", "127.1.2.3:1", "localhost:443", "[::1]:5000"])
def test_loopback_registries(good: str) -> None:
    assert check_loopback_registry(good) == good


@pytest.mark.parametrize(
    "bad", ["registry.local:5000", "10.0.0.1:5000", "192.0.2.1:443", "127.0.0.1", "0.0.0.0:80"]
)
def test_only_loopback_registries_may_skip_tls(bad: str) -> None:
    with pytest.raises(ImageError):
        check_loopback_registry(bad)
