"""Image cache cost: warm resolve (what each sandbox creation pays) and a cold pull + unpack of a
generated ~500 MB image, with baselines measured in the same run.

- warm: ``ImageCache.resolve`` of an image already in the cache, for oci:, docker-archive: and a
  docker:// reference (its mapping only, no registry round trip), plus ``lease``; against a bare
  fork/exec of ``true``.
- cold: ``ImageCache.pull`` of the oci: image into an empty cache (skopeo copy, umoci unpack,
  hardening, publish), against ``tar -xzf`` of the same gzip layer (the same decompression and
  writes), ``tar -xf`` of it uncompressed, and ``cp -a`` of the source tree; with the cost of each
  step measured alone.

Run as root: .venv/bin/python benchmarks/bench_images.py [--size-mb 500] [--runs 3] [--n 300]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from corral.images import ImageCache, harden_rootfs


def _ms(fn: Callable[[], object], n: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _s(fn: Callable[[], object], runs: int, before: Callable[[], object] = lambda: None) -> list[float]:
    out = []
    for _ in range(runs):
        before()
        os.sync()
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _sh(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True)


def generate_tree(root: Path, size_mb: int) -> int:
    """A tree shaped like a language runtime plus a repository: mostly small files and a few large
    ones (~35 KB on average), each about half random so that it compresses roughly as real images
    do (~2x)."""
    sizes = [512] * 35 + [2048] * 25 + [8192] * 20 + [32768] * 12 + [131072] * 6 + [1048576] * 2
    random.Random(7).shuffle(sizes)
    total, i, target = 0, 0, size_mb * 1024 * 1024
    while total < target:
        size = sizes[i % len(sizes)]
        d = root / f"usr/lib/pkg{i % 97:02d}/mod{i % 13}"
        d.mkdir(parents=True, exist_ok=True)
        line = b"def function_%d(x):\n    return x * %d\n" % (i, i)
        half = size // 2
        (d / f"f{i}.py").write_bytes(os.urandom(half) + (line * (half // len(line) + 1))[: size - half])
        total += size
        i += 1
    for name in ("bin", "etc", "app", "tmp"):
        (root / name).mkdir(exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    return i


def build_image(base: Path, size_mb: int) -> tuple[str, Path, int]:
    tree = base / "tree"
    files = generate_tree(tree, size_mb)
    layout = base / "layout"
    _sh("umoci", "init", "--layout", layout)
    _sh("umoci", "new", "--image", f"{layout}:big")
    _sh("umoci", "insert", "--image", f"{layout}:big", tree, "/")
    _sh("umoci", "config", "--image", f"{layout}:big", "--config.env=PATH=/bin", "--config.workingdir=/app")
    _sh("umoci", "gc", "--layout", layout)
    return f"oci:{layout}:big", tree, files


def _layer_blob(layout: Path) -> Path:
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    return layout / "blobs/sha256" / manifest["layers"][0]["digest"][7:]


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp_s:
        tmp = Path(tmp_s)
        t = time.perf_counter()
        ref, tree, files = build_image(tmp, args.size_mb)
        layout = tmp / "layout"
        blob = _layer_blob(layout)
        plain = tmp / "layer.tar"
        with gzip.open(blob, "rb") as src, plain.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        du = sum(f.stat().st_size for f in tree.rglob("*") if f.is_file())
        print(
            f"image: {files} files, {du / 2**20:.0f} MiB apparent, "
            f"layer {blob.stat().st_size / 2**20:.0f} MiB gzip (built in {time.perf_counter() - t:.0f} s)"
        )

        # --- cold: pull + unpack into an empty cache, against baselines of the same content ----
        cache_root = tmp / "cache"
        out = tmp / "out"

        def reset() -> None:
            shutil.rmtree(cache_root, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()

        cold = _s(lambda: ImageCache(cache_root).pull(ref), args.runs, reset)
        tar_xz = _s(lambda: _sh("tar", "-xzf", blob, "-C", out), args.runs, reset)
        tar_x = _s(lambda: _sh("tar", "-xf", plain, "-C", out), args.runs, reset)
        cp_a = _s(lambda: _sh("cp", "-a", tree, out / "copy"), args.runs, reset)
        step_copy = _s(
            lambda: _sh("skopeo", "copy", "--quiet", ref, f"oci:{out}/layout:img"), args.runs, reset
        )
        reset()
        _sh("skopeo", "copy", "--quiet", ref, f"oci:{out}/layout:img")
        unpack_dir = out / "rootfs"

        def clear_unpack() -> None:
            shutil.rmtree(unpack_dir, ignore_errors=True)

        step_unpack = _s(
            lambda: _sh("umoci", "raw", "unpack", "--image", f"{out}/layout:img", unpack_dir),
            args.runs,
            clear_unpack,
        )
        step_harden = _s(lambda: harden_rootfs(unpack_dir), args.runs)

        # --- warm: what creating a sandbox from a cached image costs ----------------------------
        reset()
        cache = ImageCache(cache_root)
        allowed = [f"oci:{tmp}/", f"docker-archive:{tmp}/"]
        image = cache.resolve(ref, allowed=allowed)
        archive = tmp / "image.tar"
        _sh("skopeo", "copy", "--quiet", ref, f"docker-archive:{archive}")
        cache.resolve(f"docker-archive:{archive}", allowed=allowed)
        # A docker:// reference warm in the cache: its mapping, written as a pull from a registry would.
        docker_ref = "docker://registry.bench.invalid/team/big:1"
        mapping = {
            "ref": docker_ref,
            "digest": image.digest,
            "source": image.source_digest,
            "source_digest": image.source_digest,
            "pulled_at": time.time(),
        }
        key = hashlib.sha256(docker_ref.encode()).hexdigest()[:32]
        (cache_root / "refs" / f"{key}.json").write_text(json.dumps(mapping))
        assert (
            cache.resolve(docker_ref, allowed=["docker://registry.bench.invalid/team/"]).digest
            == image.digest
        )

        bare = _ms(lambda: subprocess.run(["/bin/true"], check=True), args.n)
        warm_oci = _ms(lambda: cache.resolve(ref, allowed=allowed), args.n)
        warm_arch = _ms(lambda: cache.resolve(f"docker-archive:{archive}", allowed=allowed), args.n)
        warm_docker = _ms(
            lambda: cache.resolve(docker_ref, allowed=["docker://registry.bench.invalid/team/"]), args.n
        )

        def resolve_lease() -> None:
            cache.lease(cache.resolve(ref, allowed=allowed)).close()

        warm_lease = _ms(resolve_lease, args.n)

    base = _med(bare)
    print(f"\n{'warm (cached image)':<44}{'median ms':>10}{'p90 ms':>10}{'x bare':>9}")
    for name, xs in (
        ("bare fork/exec of true", bare),
        ("resolve docker:// (mapping only)", warm_docker),
        ("resolve docker-archive: (stat of the file)", warm_arch),
        ("resolve oci: (index + manifest re-read)", warm_oci),
        ("resolve oci: + lease + release", warm_lease),
    ):
        p90 = statistics.quantiles(xs, n=10)[-1]
        print(f"{name:<44}{_med(xs):>10.3f}{p90:>10.3f}{_med(xs) / base:>9.2f}")

    pull = _med(cold)
    print(f"\n{'cold (empty cache), ' + str(args.size_mb) + ' MB':<44}{'median s':>10}{'pull / it':>10}")
    for name, xs in (
        ("ImageCache.pull (copy+unpack+harden+publish)", cold),
        ("  step: skopeo copy oci -> oci", step_copy),
        ("  step: umoci raw unpack", step_unpack),
        ("  step: harden_rootfs walk", step_harden),
        ("baseline: tar -xzf of the gzip layer", tar_xz),
        ("baseline: tar -xf of the plain layer", tar_x),
        ("baseline: cp -a of the source tree", cp_a),
    ):
        print(f"{name:<44}{_med(xs):>10.2f}{pull / _med(xs):>10.2f}")


if __name__ == "__main__":
    main()
