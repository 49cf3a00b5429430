"""Loading a framework's real modules from its PyPI wheel, for frameworks that need torch to install.

``./dev setup`` downloads the pinned wheels (``framework_wheels.txt``, no dependencies) into
``.venv/framework-wheels``; a missing one is fetched from PyPI with pip. A wheel is unpacked
once per session. ``load_modules`` imports the named real modules from it without running
the package's ``__init__`` (which pulls in torch, vLLM and the rest); the imports those
modules make of torch/vLLM/... and of the framework's own GPU-side modules are replaced by
``Permissive`` stand-ins, and only where the tested code never uses them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import subprocess
import sys
import types
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PINS = Path(__file__).with_name("framework_wheels.txt")
WHEELS = ROOT / ".venv" / "framework-wheels"


def pinned() -> dict[str, str]:
    """name -> version, as pinned in framework_wheels.txt (the tested, supported versions)."""
    out: dict[str, str] = {}
    for line in PINS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[name.strip()] = version.strip()
    return out


def wheel(name: str) -> Path:
    version = pinned()[name]
    stem = name.replace("-", "_")
    found = sorted(WHEELS.glob(f"{stem}-{version}-*.whl"))
    if not found:
        WHEELS.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "-d",
                str(WHEELS),
                f"{name}=={version}",
            ],
            check=True,
        )
        found = sorted(WHEELS.glob(f"{stem}-{version}-*.whl"))
    assert found, f"no wheel for {name}=={version} in {WHEELS}"
    return found[0]


def unpack(name: str, dest: Path) -> Path:
    """The unpacked wheel's import root (``purelib`` for wheels that keep it under .data/)."""
    target = dest / name
    if not target.exists():
        with zipfile.ZipFile(wheel(name)) as z:
            z.extractall(target)
    purelib = list(target.glob("*.data/purelib"))
    return purelib[0] if purelib else target


class _PermissiveMeta(type):
    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return Permissive


class Permissive(metaclass=_PermissiveMeta):
    """Stands in for anything a stubbed module exports: a class, a function, a decorator, a context."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]  # used as a decorator
        return Permissive()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return Permissive()

    def __enter__(self) -> Permissive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __class_getitem__(cls, item: Any) -> Any:
        return cls


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return Permissive


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, prefixes: Sequence[str]) -> None:
        self.prefixes = tuple(prefixes)

    def _match(self, fullname: str) -> bool:
        return any(fullname == p or fullname.startswith(p + ".") for p in self.prefixes)

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not self._match(fullname):
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        mod = _StubModule(spec.name)
        mod.__path__ = []
        return mod

    def exec_module(self, module: types.ModuleType) -> None:
        return None


@contextmanager
def load_modules(
    root: Path, packages: Sequence[str], stubs: Sequence[str], modules: Sequence[str]
) -> Iterator[dict[str, types.ModuleType]]:
    """Import ``modules`` (real files under ``root``) with ``packages`` as bare namespaces (their
    ``__init__`` not run) and every module under ``stubs`` replaced by a stand-in; undone on exit."""
    before = set(sys.modules)
    finder = _StubFinder(stubs)
    sys.meta_path.insert(0, finder)
    try:
        for pkg in packages:
            mod = types.ModuleType(pkg)
            mod.__path__ = [str(root / pkg.replace(".", "/"))]
            sys.modules[pkg] = mod
            parent, _, child = pkg.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, mod)
        yield {m: importlib.import_module(m) for m in modules}
    finally:
        sys.meta_path.remove(finder)
        for name in set(sys.modules) - before:
            del sys.modules[name]
