"""The conformance suite as a pytest plugin: one test per check and variant, known gaps as strict xfails.

A backend author subclasses ``ConformanceSuite`` in a test module, gives it a
factory, and loads this plugin (``pytest_plugins = ["corral.harness.conformance"]``
in the root ``conftest.py`` or in the test module, or ``pytest -p
corral.harness.conformance``)::

    pytest_plugins = ["corral.harness.conformance"]

    class TestMyBackend(ConformanceSuite):
        known_gaps = {"stream-live": "our transport buffers output until the call ends"}

        @pytest.fixture
        def async_factory(self) -> AsyncFactory:
            return lambda: MySandbox(policy)          # an AsyncSandboxLike, not started yet

pytest then collects ``test_conformance[async-run-result]``,
``test_conformance[sync-files-symlink-escape]``, ... A known gap is a check
expected to fail: if it starts passing, the test fails (strict), so the list
stays true. ``sync_factory`` defaults to the async one behind ``SyncSandbox``;
override it to check a backend's own sync class. ``variants`` limits the faces run.

PYTEST_DONT_REWRITE: this module has no asserts for pytest to rewrite, so a test module
may import it before pytest loads it as a plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import pytest

from corral.harness._conformance import AsyncFactory, SyncFactory, run_check
from corral.harness._conformance_checks import CHECKS, Check, ConformanceFailure, Variant
from corral.harness._sync_sandbox import SyncSandbox

__all__ = ["CHECKS", "AsyncFactory", "ConformanceSuite", "SyncFactory"]

_NO_PLUGIN = "ConformanceSuite needs its plugin: add pytest_plugins = ['corral.harness.conformance']"


class ConformanceSuite:
    """Subclass as ``Test...`` with an ``async_factory`` fixture; see the module's docstring."""

    known_gaps: ClassVar[Mapping[str, str]] = {}  # check name -> why this backend fails it
    variants: ClassVar[tuple[Variant, ...]] = ("sync", "async")

    @pytest.fixture
    def sync_factory(self, async_factory: AsyncFactory) -> SyncFactory:
        return lambda: SyncSandbox(async_factory())

    # Parametrized by the plugin; without it, these say what is missing.
    @pytest.fixture
    def corral_variant(self) -> Variant:
        raise pytest.UsageError(_NO_PLUGIN)

    @pytest.fixture
    def corral_check(self) -> Check:
        raise pytest.UsageError(_NO_PLUGIN)

    def test_conformance(
        self, corral_variant: Variant, corral_check: Check, request: pytest.FixtureRequest, tmp_path: Path
    ) -> None:
        name = "sync_factory" if corral_variant == "sync" else "async_factory"
        run_check(corral_check, request.getfixturevalue(name), corral_variant, tmp_path)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "corral_conformance: a check of the Corral sandbox conformance suite")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "corral_check" not in metafunc.fixturenames:
        return
    cls = metafunc.cls
    if cls is None or not issubclass(cls, ConformanceSuite):
        raise pytest.UsageError(
            f"{metafunc.function.__qualname__}: corral_check is for ConformanceSuite tests"
        )
    gaps = dict(cls.known_gaps)
    unknown = sorted(set(gaps) - {c.name for c in CHECKS})
    if unknown:
        raise pytest.Collector.CollectError(
            f"{cls.__qualname__}.known_gaps names checks that do not exist: {unknown}"
        )
    bad = sorted(set(cls.variants) - {"sync", "async"})
    if bad:
        raise pytest.Collector.CollectError(f"{cls.__qualname__}.variants: {bad} (use 'sync' and/or 'async')")
    params = []
    for variant in cls.variants:
        for check in CHECKS:
            marks: list[pytest.MarkDecorator] = [pytest.mark.corral_conformance]
            if check.name in gaps:
                reason = f"known gap of {cls.__qualname__}: {gaps[check.name]}"
                marks.append(pytest.mark.xfail(strict=True, raises=ConformanceFailure, reason=reason))
            params.append(pytest.param(variant, check, id=f"{variant}-{check.name}", marks=marks))
    metafunc.parametrize(("corral_variant", "corral_check"), params)
