"""Sandbox backends by name: the built-in ones, and those third parties register as entry points.

A backend is a factory (usually the class) returning an ``AsyncSandboxLike`` that is not
started yet; its arguments are the backend's own. A third party declares one in its
``pyproject.toml``::

    [project.entry-points."corral.backends"]
    firecracker = "corral_firecracker:FirecrackerSandbox"

and a trainer asks for it by name::

    make = backend("firecracker")     # BackendError now if the name is unknown or its plugin is broken
    async with make(policy) as sb:
        await sb.run("pytest -q")

A name is resolved when asked for, so configuration that names a backend fails at
start-up, not at the first call; a plugin that fails to import is a ``BackendError``
naming it and its distribution, never skipped; two declarations of one name are an
error, not a silent choice.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from corral.errors import BackendError
from corral.harness._interface import AsyncSandboxLike

ENTRY_POINT_GROUP = "corral.backends"
BackendFactory = Callable[..., AsyncSandboxLike]

# The project's own backends, by the same "module:attribute" form an entry point uses. The remote
# ones live in later layers and are imported only when asked for.
BUILTIN_BACKENDS: Mapping[str, str] = {
    "local": "corral.harness._async_sandbox:AsyncSandbox",
    "service": "corral.integrations.service:AsyncRemoteSandbox",
    "ray": "corral.integrations.ray:AsyncPoolSandbox",
}


@dataclass(frozen=True)
class BackendSpec:
    name: str
    value: str  # module:attribute
    origin: str  # "corral" or the distribution that declared it

    def load(self) -> BackendFactory:
        ep = importlib.metadata.EntryPoint(self.name, self.value, ENTRY_POINT_GROUP)
        try:
            obj: Any = ep.load()
        except Exception as exc:  # an import error, a missing attribute, a plugin that raises
            raise BackendError(
                f"sandbox backend {self.name!r} ({self.value}, from {self.origin}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not callable(obj):
            raise BackendError(
                f"sandbox backend {self.name!r} ({self.value}, from {self.origin}) is a "
                f"{type(obj).__name__}, not a factory of sandboxes"
            )
        factory: BackendFactory = obj
        return factory


class BackendRegistry:
    """The backends this process can use: built-ins and the ``corral.backends`` entry points."""

    def __init__(self, specs: Mapping[str, BackendSpec]) -> None:
        self._specs = dict(specs)

    @classmethod
    def discover(cls) -> BackendRegistry:
        """Read every declaration (nothing is imported yet); a name declared twice is a BackendError."""
        specs = {n: BackendSpec(n, v, "corral") for n, v in BUILTIN_BACKENDS.items()}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            origin = ep.dist.name if ep.dist is not None else "an unnamed distribution"
            prev = specs.get(ep.name)
            if prev is not None:
                raise BackendError(
                    f"sandbox backend {ep.name!r} is declared twice: by {prev.origin} ({prev.value}) "
                    f"and by {origin} ({ep.value})"
                )
            specs[ep.name] = BackendSpec(ep.name, ep.value, origin)
        return cls(specs)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def spec(self, name: str) -> BackendSpec:
        spec = self._specs.get(name)
        if spec is None:
            raise BackendError(f"unknown sandbox backend {name!r}; known: {', '.join(self.names())}")
        return spec

    def get(self, name: str) -> BackendFactory:
        """The factory of ``name``, loaded now (BackendError if unknown or if it fails to load)."""
        return self.spec(name).load()

    def load_all(self) -> dict[str, BackendFactory]:
        """Load every backend (a check mode): one BackendError listing every one that fails."""
        loaded: dict[str, BackendFactory] = {}
        problems: list[str] = []
        for name in self.names():
            try:
                loaded[name] = self.get(name)
            except BackendError as exc:
                problems.append(str(exc))
        if problems:
            raise BackendError("\n".join(problems))
        return loaded


def backend(name: str) -> BackendFactory:
    """The factory of the backend called ``name`` (built in, or from a ``corral.backends`` entry point)."""
    return BackendRegistry.discover().get(name)
