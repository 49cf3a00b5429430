"""verifiers (0.4, the v1 runtime API) and prime-rl: a ``Runtime`` backed by a Corral sandbox.

verifiers runs each rollout's harness and tools through a ``Runtime``: ``start``, ``run(argv,
env)``, ``read`` / ``write``, ``stop``; prime-rl trains on verifiers environments. A
``CorralRuntime`` is one guarded async episode: every command the rollout runs is inspected,
confined and recorded like any Corral tool call, and its verdict is kept. Hand it to a
rollout as the runtime it borrows (``runtime=CorralRuntime(...)``), or provision one per
rollout::

    async with CorralRuntime(policy="policy.yaml", run_id="my-run") as rt:
        result = await rt.run(["pytest", "-q"], {})
    rt.summary.penalty, rt.summary.quarantined

A call Corral refused comes back as exit code 126 with Corral's neutral note on stderr.
"""

from __future__ import annotations

from types import TracebackType
from typing import Literal, Self

from verifiers.v1.errors import SandboxError
from verifiers.v1.runtimes.base import BaseRuntimeInfo, ProgramResult, Runtime

from corral.errors import CorralError
from corral.integrations._config import GuardConfig, shared_guard
from corral.integrations._episode import AsyncEpisode, StepReport
from corral.integrations._guard import Guard
from corral.respond import EpisodeSummary


class CorralRuntimeInfo(BaseRuntimeInfo):  # type: ignore[misc]
    type: Literal["corral"] = "corral"
    episode_id: str | None = None


class CorralRuntime(Runtime):  # type: ignore[misc]
    """A verifiers runtime whose commands run as Corral tool calls of one episode."""

    is_local = True

    def __init__(
        self,
        guard: Guard | None = None,
        *,
        policy: str | None = None,
        run_id: str | None = None,
        store: str | None = "default",
        episode_id: str | None = None,
        step: int | None = None,
        timeout_s: float | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.guard = guard or shared_guard(GuardConfig(policy=policy, run_id=run_id, store=store))
        self.config = CorralRuntimeInfo()
        self.info = CorralRuntimeInfo(episode_id=episode_id)
        self.timeout_s = timeout_s
        self._episode_args = (episode_id, step)
        self.episode: AsyncEpisode | None = None
        self.last_report: StepReport | None = None

    @property
    def summary(self) -> EpisodeSummary | None:
        return self.episode.summary if self.episode is not None else None

    async def start(self) -> None:
        if self.episode is None:
            self.episode = self.guard.async_episode(self._episode_args[0], step=self._episode_args[1])
            await self.episode.start()
            self.info.id = self.episode.sandbox_id
            self.info.episode_id = self.episode.episode_id

    def _live(self) -> AsyncEpisode:
        if self.episode is None or self.stopped:
            raise SandboxError(f"runtime {self.name} is not started (or was stopped)")
        return self.episode

    async def run(self, argv: list[str], env: dict[str, str]) -> ProgramResult:
        report = self.last_report = await self._live().run(
            list(argv), env=self.process_env(env), timeout=self.timeout_s
        )
        r = report.result
        if r.blocked or r.exit_code is None:
            stderr = (r.stderr + "\n" if r.stderr else "") + (r.agent_message or "")
            return ProgramResult(exit_code=126 if r.blocked else 137, stdout=r.stdout, stderr=stderr)
        stderr = r.stderr + ("\n" + r.agent_message if r.agent_message else "")
        return ProgramResult(exit_code=r.exit_code, stdout=r.stdout, stderr=stderr)

    async def _read(self, path: str, max_bytes: int | None = None) -> bytes:
        sandbox = self._live().sandbox
        try:
            data = await sandbox.read_file(path)
        except (CorralError, OSError) as exc:
            raise SandboxError(f"read {path!r}: {exc}") from exc
        return data if max_bytes is None else data[:max_bytes]

    async def write(self, path: str, data: bytes) -> None:
        try:
            await self._live().sandbox.write_file(path, data)
        except (CorralError, OSError) as exc:
            raise SandboxError(f"write {path!r}: {exc}") from exc

    async def teardown(self) -> None:
        if self.episode is not None:
            await self.episode.close()

    def cleanup(self) -> None:
        """At interpreter exit the loop is gone; the harness's own shutdown reaps the sandbox."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
