"""The node service's clients pass the conformance suite against a real ``corral serve`` process.

Sync (``RemoteSandbox``) and async (``AsyncRemoteSandbox``) over the Unix socket, and async over
token-authenticated HTTP: every check, both faces, the same implementation behind them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_support import TOKEN, ServeProcess

from corral import Policy
from corral.harness.conformance import AsyncFactory, ConformanceSuite, SyncFactory
from corral.integrations.service import AsyncRemoteSandbox, RemoteSandbox

pytest_plugins = ["corral.harness.conformance"]


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    # Detection off: the checks are about confinement, which no rule may pre-empt.
    policy = Policy.default().with_overrides(
        detection={"enabled": False}, resources={"pids_max": 64, "memory_max_bytes": 128 << 20}
    )
    proc = ServeProcess(tmp_path_factory.mktemp("serve"), policy)
    yield proc
    assert proc.stop() == 0


class TestServiceOverUnixSocket(ConformanceSuite):
    @pytest.fixture
    def async_factory(self, serve: ServeProcess) -> AsyncFactory:
        return lambda: AsyncRemoteSandbox(socket_path=serve.sock_path)

    @pytest.fixture
    def sync_factory(self, serve: ServeProcess) -> SyncFactory:
        return lambda: RemoteSandbox(socket_path=serve.sock_path)


class TestServiceOverHttp(ConformanceSuite):
    variants = ("async",)

    @pytest.fixture
    def async_factory(self, serve: ServeProcess) -> AsyncFactory:
        return lambda: AsyncRemoteSandbox(url=serve.url, token=TOKEN)


def test_nothing_is_left_on_the_node(serve: ServeProcess, tmp_path: Path) -> None:
    from corral.integrations.service import ServiceClient

    client = ServiceClient(socket_path=serve.sock_path)
    try:
        assert client.sandboxes() == []  # every check's sandbox was destroyed by its client
        assert "corral_sandboxes_live 0.0" in client.metrics()
    finally:
        client.close()
