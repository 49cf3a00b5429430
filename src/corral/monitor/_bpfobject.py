"""The exec tracer's BPF object: compiled once per node and kept in a cache.

Compiling (clang, about 0.3 s) is what a one-shot call must not pay, and
bpftrace pays it on every start together with LLVM's start-up. The object is
built from ``corral/data/bpf/exec_tracer.bpf.c`` with the program's limits as
defines, and cached under ``$CORRAL_HOME/bpf`` keyed by the source and those
defines: a changed source or limit builds a new object. Each object has a
digest beside it; an object that does not match its digest is rebuilt, never
loaded. CO-RE relocations make one object fit every kernel with BTF.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from corral.errors import CollectorError

SOURCE = "exec_tracer.bpf.c"
HEADERS = Path("/usr/include/bpf/bpf_helpers.h")  # Debian's libbpf-dev


STRLEN = 200  # the collector's default limits: bytes per string, arguments per exec
MAX_ARGS = 64


def cache_dir() -> Path:
    """``$CORRAL_BPF_CACHE`` (an image built with its objects, say), else ``$CORRAL_HOME/bpf``."""
    if os.environ.get("CORRAL_BPF_CACHE"):
        return Path(os.environ["CORRAL_BPF_CACHE"])
    return Path(os.environ.get("CORRAL_HOME") or "~/.corral").expanduser() / "bpf"


def source() -> bytes:
    return importlib.resources.files("corral").joinpath("data", "bpf", SOURCE).read_bytes()


_ARCH = {"x86_64": "x86", "aarch64": "arm64"}  # the BPF side's name for the syscall ABI


def _defines(strlen: int, max_args: int) -> list[str]:
    arch = _ARCH.get(platform.machine(), platform.machine())
    return [f"-D__TARGET_ARCH_{arch}", f"-DSTRLEN={int(strlen)}", f"-DMAXARGS={int(max_args)}"]


def _key(src: bytes, defines: list[str]) -> str:
    return hashlib.sha256(src + b"\0" + " ".join(defines).encode()).hexdigest()[:24]


def _object_path(root: Path, src: bytes, defines: list[str]) -> Path:
    return root / f"exec-{_key(src, defines)}.o"


def cached(strlen: int, max_args: int, root: Path | None = None) -> Path | None:
    """The cached object for these limits when it is there and intact."""
    root = root or cache_dir()
    _check_owner(root)
    path = _object_path(root, source(), _defines(strlen, max_args))
    return path if _intact(path) else None


def _check_owner(root: Path) -> None:
    """The kernel runs what is loaded from here, as root: a directory (or any directory above it)
    that someone else could write is refused, not trusted (CollectorError)."""
    for d in (root, *root.parents):
        try:
            st = d.stat()
        except FileNotFoundError:
            continue  # made by ``build``, with mode 0700
        except OSError as exc:
            raise CollectorError(f"cannot check the BPF object cache {root}: {exc}") from exc
        sticky = st.st_mode & 0o1000 and d != root  # /tmp-like parents guard their entries
        if st.st_uid not in (0, os.geteuid()) or (st.st_mode & 0o022 and not sticky):
            raise CollectorError(
                f"the BPF object cache {root} is not safe to load from: {d} is writable by other "
                f"users or owned by uid {st.st_uid}; set CORRAL_BPF_CACHE to a directory only root can write"
            )


def _intact(path: Path) -> bool:
    try:
        if path.stat().st_uid not in (0, os.geteuid()):
            return False
        data = path.read_bytes()
        digest = path.with_suffix(".sha256").read_text().strip()
    except OSError:
        return False
    return data[:4] == b"\x7fELF" and hashlib.sha256(data).hexdigest() == digest


def can_build() -> str | None:
    """Why an object cannot be built here (None when it can)."""
    if shutil.which("clang") is None:
        return "clang not found (apt install clang)"
    if not HEADERS.exists():
        return f"{HEADERS} not found (apt install libbpf-dev)"
    return None


def build(strlen: int, max_args: int, root: Path | None = None) -> Path:
    """The object for these limits: from the cache, or compiled into it (CollectorError if it cannot)."""
    root = root or cache_dir()
    found = cached(strlen, max_args, root)
    if found is not None:
        return found
    why = can_build()
    if why is not None:
        raise CollectorError(f"cannot build the exec tracer's BPF object: {why}")
    src = source()
    defines = _defines(strlen, max_args)
    path = _object_path(root, src, defines)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    arch_include = f"/usr/include/{platform.machine()}-linux-gnu"
    with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
        c_file = Path(tmp) / SOURCE
        c_file.write_bytes(src)
        out = Path(tmp) / "exec.o"
        # The build directory is mapped away in the debug info, so builders make identical objects.
        argv = ["clang", "-O2", "-g", "-target", "bpf", f"-fdebug-prefix-map={tmp}=.", f"-I{arch_include}"]
        try:
            subprocess.run(
                [*argv, *defines, "-c", SOURCE, "-o", "exec.o"],
                cwd=tmp,
                check=True,
                capture_output=True,
                text=True,
                timeout=120,
            )
        except subprocess.CalledProcessError as exc:
            raise CollectorError(f"clang could not build {SOURCE}: {exc.stderr.strip()[-2000:]}") from exc
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CollectorError(f"clang could not build {SOURCE}: {exc}") from exc
        data = out.read_bytes()
        # Object first, digest last: a build killed half-way leaves an object without a matching
        # digest, which the next start rebuilds. Renames keep concurrent builders from tearing.
        os.replace(out, path)
        digest = Path(tmp) / "digest"
        digest.write_text(hashlib.sha256(data).hexdigest() + "\n")
        os.replace(digest, path.with_suffix(".sha256"))
    return path


def discard(path: Path) -> None:
    """Drop a cached object the kernel would not take, so the next start builds it afresh."""
    for p in (path, path.with_suffix(".sha256")):
        with contextlib.suppress(OSError):
            p.unlink()


if __name__ == "__main__":  # prebuild (deploy/Dockerfile): python -m corral.monitor._bpfobject
    print(build(STRLEN, MAX_ARGS))
