"""Bad input and broken images: a clear ImageError naming the reference and what to do, and nothing
half-made left in the cache (no entry, no mapping, no work directory)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from corral.errors import ImageError, ImageNotAllowedError
from corral.images import ImageCache
from images_support import BuiltImage, Registry, busybox_rootfs, layer_digests, oci_layout, sh


def _clean(cache_root: Path) -> None:
    """Nothing half-made: no published entry, no reference, no work left in progress."""
    for sub in ("images", "refs", "tmp"):
        d = cache_root / sub
        assert not d.exists() or os.listdir(d) == [], f"{sub}: {os.listdir(d)}"


def _copy_layout(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


@pytest.mark.parametrize(
    ("ref", "allowed"),
    [
        ("docker://registry.example.org/team/app:1", []),
        ("docker://registry.example.org/team/app:1", ["docker://registry.example.org/other/"]),
        ("docker://registry.example.org/teamx/app:1", ["docker://registry.example.org/team/"]),
        ("docker://registry.example.org/team/app:2", ["docker://registry.example.org/team/app:1"]),
        (
            "docker://registry.example.org/team/app:1",
            ["docker://registry.example.org/team/app@sha256:" + "a" * 64],
        ),
        ("oci:/data/images-evil/x:1", ["oci:/data/images/"]),
        ("dir:/srv/rootfs", ["oci:/srv/"]),
    ],
)
def test_not_allowed_is_refused_before_anything_is_touched(
    tmp_path: Path, ref: str, allowed: list[str]
) -> None:
    cache = ImageCache(tmp_path / "cache")
    with pytest.raises(ImageNotAllowedError, match=r"not in environment\.images_allowed"):
        cache.resolve(ref, allowed=allowed)
    assert not (tmp_path / "cache").exists()  # refused before the cache was even created


def test_a_symlink_out_of_an_allowed_prefix_is_refused(tmp_path: Path) -> None:
    outside = busybox_rootfs(tmp_path / "outside")
    allowed_dir = tmp_path / "allowed"
    allowed_dir.mkdir()
    (allowed_dir / "sneaky").symlink_to(outside)
    with pytest.raises(ImageNotAllowedError, match=r"resolves \(through a symlink\) to .*/outside"):
        ImageCache(tmp_path / "cache").resolve(f"dir:{allowed_dir}/sneaky", allowed=[f"dir:{allowed_dir}/"])
    (allowed_dir / "host").symlink_to("/")
    with pytest.raises(ImageNotAllowedError):
        ImageCache(tmp_path / "cache").resolve(f"dir:{allowed_dir}/host", allowed=[f"dir:{allowed_dir}/"])


def test_dir_that_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    cache = ImageCache(tmp_path / "cache")
    for name in ("file", "missing"):
        with pytest.raises(ImageError, match=f"dir:{tmp_path}/{name}: .* is not a directory"):
            cache.resolve(f"dir:{tmp_path}/{name}", allowed=[f"dir:{tmp_path}/"])


def test_missing_sources(tmp_path: Path, registry: Registry) -> None:
    cache = ImageCache(tmp_path / "cache", insecure_registries=[registry.host])
    cases = {
        f"oci:{tmp_path}/nolayout:1": "is not an OCI image layout",
        f"docker-archive:{tmp_path}/none.tar": "does not exist",
        f"docker://{registry.host}/corral-test/never-pushed:1": "reading the manifest from the registry",
        f"docker://{registry.host}/corral-test/never@sha256:{'0' * 64}": "copying the image failed",
    }
    for ref, message in cases.items():
        with pytest.raises(ImageError) as info:
            cache.pull(ref)
        assert str(info.value).startswith(ref + ":") and message in str(info.value), str(info.value)
    _clean(tmp_path / "cache")


def test_archive_that_is_not_an_archive(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tarball at all" * 100)
    with pytest.raises(
        ImageError, match=r"copying the image failed: .*; check that the file is a `docker save`"
    ):
        ImageCache(tmp_path / "cache").pull(f"docker-archive:{bad}")
    _clean(tmp_path / "cache")


def test_blob_that_does_not_match_its_digest(tmp_path: Path, busybox_image: BuiltImage) -> None:
    layout = _copy_layout(busybox_image.layout, tmp_path / "layout")
    layer = layer_digests(layout, "v1")[0]
    blob = layout / "blobs" / "sha256" / layer.split(":")[1]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the layer
    blob.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=f"oci:{layout}:v1: copying the image failed: .*digest"):
        ImageCache(tmp_path / "cache").pull(f"oci:{layout}:v1")
    _clean(tmp_path / "cache")


def test_layer_that_is_not_a_tar_even_with_a_correct_digest(tmp_path: Path) -> None:
    """A well-formed image whose layer is garbage: skopeo copies it faithfully, umoci refuses it."""
    layout = tmp_path / "layout"
    sh("umoci", "init", "--layout", layout)
    sh("umoci", "new", "--image", f"{layout}:bad")
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(os.urandom(4096))
    # add-layer takes an uncompressed tar and compresses it: the blob is valid gzip of non-tar bytes.
    sh("umoci", "raw", "add-layer", "--image", f"{layout}:bad", garbage)
    with pytest.raises(ImageError, match=f"oci:{layout}:bad: unpacking the image's layers failed: .*corrupt"):
        ImageCache(tmp_path / "cache").pull(f"oci:{layout}:bad")
    _clean(tmp_path / "cache")


def test_image_for_another_architecture(tmp_path: Path) -> None:
    ref = oci_layout(tmp_path / "layout", busybox_rootfs(tmp_path / "r"), tag="arm", architecture="s390x")
    with pytest.raises(
        ImageError, match=r"the image is for s390x, this node is \w+; pull an image built for"
    ):
        ImageCache(tmp_path / "cache").pull(ref)
    _clean(tmp_path / "cache")


def test_tampered_manifest_in_the_source_layout(tmp_path: Path, busybox_image: BuiltImage) -> None:
    """v1's manifest rewritten to name another image's layer: a valid manifest that skopeo alone
    would copy as it finds it, but its bytes no longer have the digest the index gives."""
    layout = _copy_layout(busybox_image.layout, tmp_path / "layout")
    oci_layout(layout, busybox_rootfs(tmp_path / "evil", {"etc/evil": b"1"}), tag="evil")
    index = json.loads((layout / "index.json").read_text())
    v1 = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "v1")
    manifest = layout / "blobs" / "sha256" / v1["digest"].split(":")[1]
    manifest.write_text(
        manifest.read_text().replace(layer_digests(layout, "v1")[0], layer_digests(layout, "evil")[0])
    )
    with pytest.raises(ImageError, match=f"oci:{layout}:v1: blob {v1['digest']} does not match its digest"):
        ImageCache(tmp_path / "cache").pull(f"oci:{layout}:v1")
    _clean(tmp_path / "cache")


@pytest.mark.parametrize("tool", ["skopeo", "umoci"])
def test_missing_tool(
    tmp_path: Path, busybox_image: BuiltImage, tool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A PATH holding only the other tool: the one named is really absent for this process.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    other = "umoci" if tool == "skopeo" else "skopeo"
    found = shutil.which(other)
    assert found is not None
    (bindir / other).symlink_to(found)
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(
        ImageError, match=rf"{busybox_image.ref}: {tool} is not installed; install it \(apt-get"
    ):
        ImageCache(tmp_path / "cache").pull(busybox_image.ref)
    _clean(tmp_path / "cache")


def test_cache_owned_by_another_user_is_refused(tmp_path: Path, busybox_image: BuiltImage) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    os.chown(root, 65534, 65534)
    with pytest.raises(ImageError, match=r"belongs to uid 65534.*another user could swap its images"):
        ImageCache(root).pull(busybox_image.ref)


def test_cache_with_loose_permissions_is_tightened(tmp_path: Path, busybox_image: BuiltImage) -> None:
    root = tmp_path / "cache"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)
    ImageCache(root).pull(busybox_image.ref)
    assert os.stat(root).st_mode & 0o777 == 0o700
