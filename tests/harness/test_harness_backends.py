"""The backend registry: built-ins, a third-party backend found through a real entry point, and every
way a name can fail (unknown, broken plugin, declared twice), each a BackendError at start-up."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from corral import AsyncSandbox, Policy
from corral.errors import BackendError
from corral.harness import AsyncSandboxLike, BackendRegistry, backend
from corral.harness.conformance import AsyncFactory, ConformanceSuite

pytest_plugins = ["corral.harness.conformance"]

PLUGINS = Path(__file__).parent / "plugins"  # each a sys.path entry holding packages and their dist-info
MiB = 1 << 20


def _policy() -> Policy:
    return Policy.default().with_overrides(
        resources={"memory_max_bytes": 128 * MiB, "pids_max": 64, "wall_timeout_s": 20},
        detection={"enabled": False},
    )


def test_builtin_backends_load_lazily_as_their_classes() -> None:
    from corral.integrations.ray import AsyncPoolSandbox
    from corral.integrations.service import AsyncRemoteSandbox

    reg = BackendRegistry.discover()
    assert {"local", "service", "ray"} <= set(reg.names())
    assert reg.spec("ray").origin == "corral"
    assert backend("local") is AsyncSandbox
    assert backend("service") is AsyncRemoteSandbox
    assert backend("ray") is AsyncPoolSandbox


def test_a_third_party_backend_is_found_through_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "audited" not in BackendRegistry.discover().names()
    monkeypatch.syspath_prepend(str(PLUGINS / "good"))
    reg = BackendRegistry.discover()
    spec = reg.spec("audited")
    assert (spec.origin, spec.value) == ("corral-audited-backend", "corral_audited_backend:AuditedSandbox")
    make = reg.get("audited")

    async def use() -> tuple[str, list[str]]:
        sb = make(_policy())
        assert isinstance(sb, AsyncSandboxLike)
        async with sb:
            await sb.write_file("in.txt", "from the trainer")
            r = await sb.run("cat in.txt")
        return r.stdout, sb.audit  # type: ignore[attr-defined]

    out, audit = asyncio.run(use())
    assert out == "from the trainer"
    assert audit == ["write_file in.txt", "run 'cat in.txt'"]


def test_an_unknown_name_is_a_backend_error() -> None:
    with pytest.raises(BackendError, match=r"unknown sandbox backend 'firecracker'; known: .*local"):
        backend("firecracker")


def test_a_broken_plugin_is_a_backend_error_never_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(PLUGINS / "good"))
    monkeypatch.syspath_prepend(str(PLUGINS / "broken"))
    reg = BackendRegistry.discover()
    assert {"broken", "missing", "notcallable"} <= set(reg.names())  # listed, not dropped
    with pytest.raises(BackendError, match=r"'broken'.*corral-broken-backend.*ImportError.*libfirecracker"):
        reg.get("broken")
    with pytest.raises(BackendError, match=r"'missing'.*AttributeError"):
        reg.get("missing")
    with pytest.raises(BackendError, match=r"'notcallable'.*is a int, not a factory"):
        reg.get("notcallable")
    with pytest.raises(BackendError) as every:
        reg.load_all()  # the check mode reports every failure in one pass
    assert [line.split("'")[1] for line in str(every.value).splitlines()] == [
        "broken",
        "missing",
        "notcallable",
    ]
    assert reg.get("audited") is not None  # the good plugin beside them still loads


def test_a_name_declared_twice_stops_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(PLUGINS / "clash"))
    twice = r"'local' is declared twice: by corral .* corral-clashing-backend"
    with pytest.raises(BackendError, match=twice):
        BackendRegistry.discover()


class TestAuditedBackendConformance(ConformanceSuite):
    """A backend author's view: the third-party backend, by its registered name, through the plugin."""

    variants = ("async",)

    @pytest.fixture
    def async_factory(self, monkeypatch: pytest.MonkeyPatch) -> AsyncFactory:
        monkeypatch.syspath_prepend(str(PLUGINS / "good"))
        make = backend("audited")
        policy = _policy()
        return lambda: make(policy)
