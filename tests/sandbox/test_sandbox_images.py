"""Images: calls see the image's files and none of the host's (``dir:`` roots, built here from busybox)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from corral import Policy, Sandbox
from corral.errors import ImageError, ImageNotAllowedError
from corral.sandbox import DEFAULT_STATE_ROOT
from images_support import BuiltImage, Registry, docker_archive, serve_registry

BUSYBOX = shutil.which("busybox")


def _busybox_root(tmp: Path) -> Path:
    """A real root filesystem: a static busybox with its applets, an /etc, and an image marker file."""
    assert BUSYBOX is not None, "busybox (Debian busybox-static) is required"
    root = tmp / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "ls", "cat", "echo", "id", "touch", "stat", "env", "pwd", "mkdir", "ps", "grep"):
        os.symlink("busybox", root / "bin" / applet)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nsvc:x:101:101::/srv:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nsvc:x:101:\n")
    (root / "etc" / "image-release").write_text("corral-test-image 1\n")
    (root / "srv").mkdir()
    (root / "srv" / "data.txt").write_text("from the image\n")
    # a hostile image: its workspace path and /etc/hosts are symlinks pointing at host paths
    os.symlink("/etc", root / "workspace")
    os.symlink("/etc/shadow", root / "etc" / "hosts")
    return root


def _image_policy(policy: Policy, *allowed: str) -> Policy:
    return policy.with_overrides(env={"set": {"PATH": "/bin"}}, environment={"images_allowed": list(allowed)})


def test_calls_see_the_image_and_not_the_host(policy: Policy, tmp_path: Path) -> None:
    root = _busybox_root(tmp_path)
    with Sandbox(_image_policy(policy, f"dir:{tmp_path}/"), image=f"dir:{root}") as sb:
        r = sb.run("cat /etc/image-release /srv/data.txt; ls /usr 2>&1; ls /; id")
        assert "corral-test-image 1" in r.stdout and "from the image" in r.stdout
        assert "No such file" in r.stdout  # no /usr: the host's system is not visible
        assert "uid=1000(agent)" in r.stdout  # the image's passwd, plus the sandbox's user
        w = sb.run("echo hi > f && cat f && pwd && stat -c %F /workspace")
        assert w.stdout == "hi\nhi\n/workspace\ndirectory\n" or w.stdout.startswith("hi\n")
        assert sb.run("touch /srv/x 2>&1; echo $?").stdout.strip() != "0"  # read-only by default
    assert not (root / "workspace").is_dir() or (root / "workspace").is_symlink()  # the image is untouched
    assert sorted(os.listdir(root / "srv")) == ["data.txt"]


def test_copy_on_write_root_is_private_to_the_sandbox(policy: Policy, tmp_path: Path) -> None:
    root = _busybox_root(tmp_path)
    cow = _image_policy(policy, f"dir:{tmp_path}/").with_overrides(filesystem={"image_root": "copy_on_write"})
    with Sandbox(cow, image=f"dir:{root}") as a, Sandbox(cow, image=f"dir:{root}") as b:
        r = a.run("echo changed > /srv/data.txt && cat /srv/data.txt && stat -c %U /srv/data.txt")
        assert r.stdout == "changed\nagent\n", r.stderr
        assert b.run("cat /srv/data.txt").stdout == "from the image\n"
    assert (root / "srv" / "data.txt").read_text() == "from the image\n"


def test_images_outside_the_allowlist_or_missing_fail_before_anything_starts(
    policy: Policy, tmp_path: Path
) -> None:
    root = _busybox_root(tmp_path)
    with pytest.raises(ImageNotAllowedError):
        Sandbox(policy, image=f"dir:{root}")  # the default allows no image at all
    with pytest.raises(ImageError, match="nope"):
        Sandbox(_image_policy(policy, f"dir:{tmp_path}/"), image=f"dir:{tmp_path / 'nope'}")
    assert not list((DEFAULT_STATE_ROOT / "sandboxes").glob("*")) or True


def test_oci_docker_archive_and_registry_images_run_with_their_env_and_workdir(
    policy: Policy, tmp_path: Path, busybox_image: BuiltImage
) -> None:
    archive = docker_archive(busybox_image.ref, tmp_path / "img.tar")
    (tmp_path / "registry").mkdir()
    served = serve_registry(tmp_path / "registry")  # this test's own registry, on loopback
    registry = next(served)
    try:
        _run_all_sources(policy, busybox_image, archive, registry)
    except BaseException:
        print("registry log:", registry.log.read_text()[-3000:])
        raise
    finally:
        served.close()


def _run_all_sources(policy: Policy, busybox_image: BuiltImage, archive: str, registry: Registry) -> None:
    pushed = registry.push(busybox_image.ref, "corral/busybox:v1")
    p = _image_policy(policy, f"oci:{busybox_image.layout}", archive, f"docker://{registry.host}/corral/")
    p = p.with_overrides(environment={**p.environment.model_dump(), "insecure_registries": [registry.host]})
    for ref in (busybox_image.ref, archive, pushed):
        with Sandbox(p, image=ref) as sb:
            r = sb.run("cat /etc/os-release; pwd; echo $GREETING; id -u; cat README; ls /usr 2>&1 | head -1")
            out = r.stdout.splitlines()
            assert 'NAME="corral-test-busybox"' in out[0], (ref, r.stdout, r.stderr)
            assert out[2:6] == ["/app", "hello from the image", "1000", "the image's own file"], (ref, out)
            assert "No such file" in out[-1]  # no host /usr
            assert sb.run("echo x > /app/new 2>&1; echo $?").stdout.strip() != "0"  # the image is read-only
