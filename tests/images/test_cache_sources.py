"""Every kind of reference resolves to an unpacked root filesystem with the image's files and config:
dir:, oci: (built by umoci), docker-archive: (made by skopeo) and docker:// (a real local registry)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from corral import Policy
from corral.errors import ImageError
from corral.images import Image, ImageCache, parse_ref
from images_support import BuiltImage, Registry, busybox_rootfs, docker_archive, oci_layout


def _check_busybox(image: Image) -> None:
    root = image.rootfs
    assert (root / "bin" / "busybox").is_file()
    assert os.readlink(root / "bin" / "sh") == "busybox"
    assert (root / "app" / "README").read_text() == "the image's own file\n"
    assert "corral-test-busybox" in (root / "etc" / "os-release").read_text()
    assert not (root / "etc" / "shadow").exists()  # nothing of the host's
    # The unpacked busybox is a working program.
    out = subprocess.run([str(root / "bin" / "busybox"), "echo", "ran"], capture_output=True, text=True)
    assert out.stdout == "ran\n"


def _check_config(image: Image) -> None:
    assert dict(image.env) == {"PATH": "/bin", "GREETING": "hello from the image"}
    assert image.working_dir == "/app"
    assert image.user == "1000:1000"  # for information; the runtime never applies it
    assert image.digest is not None and image.digest.startswith("sha256:")


def test_dir_is_the_directory_itself_with_no_copy(tmp_path: Path) -> None:
    rootfs = busybox_rootfs(tmp_path / "rootfs")
    cache = ImageCache(tmp_path / "cache")
    image = cache.resolve(f"dir:{rootfs}", allowed=[f"dir:{tmp_path}/"])
    assert image.rootfs == rootfs and image.digest is None
    assert dict(image.env) == {} and image.working_dir is None
    assert not (tmp_path / "cache").exists()  # nothing cached, nothing copied
    with cache.lease(image) as lease:
        assert not lease.held  # a dir: image is the user's directory; there is nothing to pin


def test_oci_layout_is_unpacked_with_env_and_working_dir(tmp_path: Path, busybox_image: BuiltImage) -> None:
    cache = ImageCache(tmp_path / "cache")
    image = cache.resolve(busybox_image.ref, allowed=[busybox_image.ref])
    _check_busybox(image)
    _check_config(image)
    assert image.rootfs.is_relative_to(tmp_path / "cache" / "images")
    assert image.rootfs.parent.name == image.digest.replace(":", "-")  # type: ignore[union-attr]
    index = json.loads((busybox_image.layout / "index.json").read_text())
    assert image.source_digest == index["manifests"][0]["digest"]
    # Warm: the same published entry, nothing unpacked again.
    inode = os.stat(image.rootfs).st_ino
    again = cache.resolve(busybox_image.ref, allowed=[busybox_image.ref])
    assert again == image and os.stat(again.rootfs).st_ino == inode
    assert os.listdir(tmp_path / "cache" / "tmp") == []
    assert stat.S_IMODE(os.stat(tmp_path / "cache").st_mode) == 0o700


def test_oci_layout_changed_since_is_pulled_again(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    ref = oci_layout(layout, busybox_rootfs(tmp_path / "r1"), tag="t")
    cache = ImageCache(tmp_path / "cache")
    first = cache.resolve(ref, allowed=[f"oci:{tmp_path}/"])
    oci_layout(layout, busybox_rootfs(tmp_path / "r2", {"etc/version": b"2\n"}), tag="t")
    second = cache.resolve(ref, allowed=[f"oci:{tmp_path}/"])
    assert second.digest != first.digest
    assert (second.rootfs / "etc" / "version").read_text() == "2\n"
    assert not (first.rootfs / "etc" / "version").exists()  # the first entry is never modified
    assert {im.digest for im in cache.ls()} == {first.digest, second.digest}


def test_oci_layout_without_a_tag_uses_its_only_image(tmp_path: Path, busybox_image: BuiltImage) -> None:
    cache = ImageCache(tmp_path / "cache")
    image = cache.resolve(f"oci:{busybox_image.layout}", allowed=[f"oci:{busybox_image.layout}"])
    _check_busybox(image)


def test_oci_layout_with_several_images_needs_a_tag(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    oci_layout(layout, busybox_rootfs(tmp_path / "r"), tag="a")
    oci_layout(layout, tmp_path / "r", tag="b")
    cache = ImageCache(tmp_path / "cache")
    with pytest.raises(ImageError, match=r"holds 2 images; name one as oci:PATH:TAG \(tags: \['a', 'b'\]\)"):
        cache.resolve(f"oci:{layout}", allowed=[f"oci:{layout}"])
    with pytest.raises(ImageError, match="no image tagged 'c'"):
        cache.resolve(f"oci:{layout}:c", allowed=[f"oci:{layout}"])


def test_docker_archive_from_skopeo(tmp_path: Path, busybox_image: BuiltImage) -> None:
    ref = docker_archive(busybox_image.ref, tmp_path / "image.tar")
    cache = ImageCache(tmp_path / "cache")
    image = cache.resolve(ref, allowed=[ref])
    _check_busybox(image)
    _check_config(image)
    assert image.source_digest is None
    assert cache.resolve(ref, allowed=[ref]) == image


def test_docker_registry_pull_by_tag_and_by_digest(
    tmp_path: Path, busybox_image: BuiltImage, registry: Registry
) -> None:
    ref = registry.push(busybox_image.ref, "corral-test/busybox:v1")
    cache = ImageCache(tmp_path / "cache", insecure_registries=[registry.host])
    image = cache.resolve(ref, allowed=[f"docker://{registry.host}/corral-test/"])
    _check_busybox(image)
    _check_config(image)
    assert image.source_digest is not None
    # The manifest digest the registry reports is the one we pin.
    head = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", ref],
        capture_output=True,
        text=True,
        check=True,
    )
    assert head.stdout.strip() == image.source_digest
    pinned = f"docker://{registry.host}/corral-test/busybox@{image.source_digest}"
    by_digest = cache.resolve(pinned, allowed=[pinned])
    assert by_digest.rootfs == image.rootfs  # one unpacked entry for both references
    assert [im.refs for im in cache.ls()] == [tuple(sorted([str(parse_ref(ref)), pinned]))]


def test_registry_tag_moved_is_seen_by_pull_not_by_warm_resolve(tmp_path: Path, registry: Registry) -> None:
    layout = tmp_path / "layout"
    ref = registry.push(oci_layout(layout, busybox_rootfs(tmp_path / "r1"), tag="x"), "corral-test/moving:x")
    cache = ImageCache(tmp_path / "cache", insecure_registries=[registry.host])
    allowed = [f"docker://{registry.host}/corral-test/moving"]
    first = cache.resolve(ref, allowed=allowed)
    assert cache.pull(ref) == first  # unchanged upstream: nothing fetched again
    registry.push(
        oci_layout(layout, busybox_rootfs(tmp_path / "r2", {"etc/v": b"2"}), tag="x"), "corral-test/moving:x"
    )
    assert cache.resolve(ref, allowed=allowed) == first  # warm: the node's copy, no registry round trip
    moved = cache.pull(ref)
    assert moved.digest != first.digest and (moved.rootfs / "etc" / "v").read_bytes() == b"2"
    assert cache.resolve(ref, allowed=allowed) == moved


def test_registry_needs_tls_unless_listed_as_a_loopback_exception(
    tmp_path: Path, busybox_image: BuiltImage, registry: Registry
) -> None:
    ref = registry.push(busybox_image.ref, "corral-test/busybox:tls")
    cache = ImageCache(tmp_path / "cache")
    with pytest.raises(ImageError, match=rf"{ref}: reading the manifest from the registry failed: .*HTTP"):
        cache.pull(ref)
    assert cache.ls() == []
    with pytest.raises(ImageError, match="only loopback registries may skip TLS verification"):
        ImageCache(tmp_path / "c2", insecure_registries=["registry.example.org:5000"])


def test_cache_for_policy_uses_corral_home_or_the_policy_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    assert ImageCache.for_policy(Policy.default()).root == tmp_path / "home" / "images"
    pol = Policy.default().with_overrides(
        environment={"image_cache": str(tmp_path / "elsewhere"), "insecure_registries": ["127.0.0.1:5000"]}
    )
    assert ImageCache.for_policy(pol).root == tmp_path / "elsewhere"
