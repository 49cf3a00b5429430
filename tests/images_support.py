"""Real images for the image tests: a static busybox root filesystem turned into an OCI layout by
umoci, copied by skopeo into docker archives and into a real registry (Debian's docker-registry)
served on 127.0.0.1 by the test itself. Nothing here reaches any other address.

A missing tool fails the test (CI installs them through ``./dev``); it never skips.
Imported as ``images_support`` (the tests folder is on sys.path through its conftest), so the
sandbox tests can build and serve images the same way.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

TOOLS = {
    "skopeo": "skopeo",
    "umoci": "umoci",
    "docker-registry": "docker-registry",
    "busybox": "busybox-static",
}
BUSYBOX = "/bin/busybox"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: install the apt package {TOOLS.get(tool, tool)} (./dev setup does)")
    return path


def sh(*args: str | Path, timeout: float = 300) -> str:
    need(str(args[0]))
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc.stdout


def busybox_rootfs(dest: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A minimal root filesystem: static busybox, its applet links, /etc files, an /app directory."""
    bb = Path(BUSYBOX)
    if not bb.exists():
        pytest.fail("/bin/busybox is missing: install the apt package busybox-static (./dev setup does)")
    for d in ("bin", "etc", "app", "tmp", "proc", "dev"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(bb, dest / "bin" / "busybox")
    for applet in ("sh", "ls", "cat", "echo", "env", "pwd", "id", "true"):
        (dest / "bin" / applet).symlink_to("busybox")
    (dest / "etc" / "os-release").write_text('NAME="corral-test-busybox"\nID=busybox\n')
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000::/app:/bin/sh\n")
    (dest / "app" / "README").write_text("the image's own file\n")
    for rel, data in (extra or {}).items():
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return dest


def oci_layout(
    layout: Path,
    rootfs: Path,
    tag: str = "v1",
    *,
    env: Sequence[str] = ("PATH=/bin", "GREETING=hello from the image"),
    working_dir: str | None = "/app",
    user: str | None = "1000:1000",
    architecture: str | None = None,
) -> str:
    """Turn ``rootfs`` into image ``layout:tag`` with umoci; return the reference text."""
    if not (layout / "index.json").exists():
        sh("umoci", "init", "--layout", layout)
    sh("umoci", "new", "--image", f"{layout}:{tag}")
    sh("umoci", "insert", "--image", f"{layout}:{tag}", rootfs, "/")
    args: list[str | Path] = ["umoci", "config", "--image", f"{layout}:{tag}", "--clear=config.env"]
    args += [f"--config.env={e}" for e in env]
    if working_dir:
        args.append(f"--config.workingdir={working_dir}")
    if user:
        args.append(f"--config.user={user}")
    if architecture:
        args.append(f"--architecture={architecture}")
    sh(*args)
    sh("umoci", "gc", "--layout", layout)
    return f"oci:{layout}:{tag}"


def add_layer(
    layout: Path, tag: str, members: Sequence[tuple[tarfile.TarInfo, bytes | None]], work: Path
) -> None:
    """Append a layer built by hand (hostile names, whiteouts) with ``umoci raw add-layer``."""
    tar_path = work / f"layer-{time.monotonic_ns()}.tar"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as t:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                t.addfile(info)
    sh("umoci", "raw", "add-layer", "--image", f"{layout}:{tag}", tar_path)
    sh("umoci", "gc", "--layout", layout)


def member(name: str, data: bytes | None = b"", **attrs: object) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    for k, v in attrs.items():
        setattr(info, k, v)
    return info, (data if info.type == tarfile.REGTYPE else None)


def docker_archive(oci_ref: str, dest: Path) -> str:
    sh("skopeo", "copy", "--quiet", oci_ref, f"docker-archive:{dest}")
    return f"docker-archive:{dest}"


def layout_blobs(layout: Path) -> dict[str, Path]:
    return {p.name: p for p in (layout / "blobs" / "sha256").iterdir()}


def layer_digests(layout: Path, tag: str) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    manifest = json.loads((layout / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_text())
    return [layer["digest"] for layer in manifest["layers"]]


# --- a real registry on loopback ------------------------------------------------------------


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    log: Path

    def push(self, oci_ref: str, name: str) -> str:
        """Copy an OCI image into the registry; return its docker:// reference."""
        sh("skopeo", "copy", "--quiet", "--dest-tls-verify=false", oci_ref, f"docker://{self.host}/{name}")
        return f"docker://{self.host}/{name}"

    def blob_gets(self, digest: str) -> int:
        """How many times a blob was downloaded (access log lines of a GET answered 200)."""
        needle = f'/blobs/{digest} HTTP/1.1" 200'
        return sum(1 for line in self.log.read_text().splitlines() if '"GET ' in line and needle in line)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_registry(workdir: Path) -> Iterator[Registry]:
    exe = need("docker-registry")
    port = _free_port()
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = workdir / "registry.log"
    with log.open("w") as out:
        proc = subprocess.Popen([exe, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(f"docker-registry exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not answer on 127.0.0.1:{port}: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield Registry(f"127.0.0.1:{port}", log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from serve_registry(tmp_path_factory.mktemp("registry"))


@dataclass(frozen=True)
class BuiltImage:
    layout: Path
    ref: str  # oci:LAYOUT:v1
    rootfs: Path  # the directory the image was made from


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    for tool in ("skopeo", "umoci"):
        need(tool)
    base = tmp_path_factory.mktemp("busybox-image")
    rootfs = busybox_rootfs(base / "rootfs")
    ref = oci_layout(base / "layout", rootfs)
    return BuiltImage(base / "layout", ref, rootfs)


@pytest.fixture(scope="session")
def big_image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """~96 MiB of incompressible files: copying and unpacking it take long enough to be interrupted."""
    base = tmp_path_factory.mktemp("big-image")
    extra = {f"data/blob{i:03d}.bin": os.urandom(2 * 1024 * 1024) for i in range(48)}
    rootfs = busybox_rootfs(base / "rootfs", extra)
    ref = oci_layout(base / "layout", rootfs, tag="big")
    return BuiltImage(base / "layout", ref, rootfs)
