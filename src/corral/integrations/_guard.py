"""The Guard: Corral for one training run. It opens a guarded episode per rollout, runs each tool call
in that episode's sandbox, applies the Responder, and reports what the trainer must do.

    guard = Guard(Policy.load("policy.yaml"), run_id="r1")
    with guard.episode("e1", step=3) as ep:                 # synchronous code
        report = ep.run("pytest -q")
    async with guard.async_episode("e2", step=3) as ep:     # asyncio code: no thread per call
        report = await ep.run("pytest -q")
    report.observation, report.penalty, report.quarantined, report.truncated

Every framework adapter in this package is a thin shape over ``Episode.run`` / ``AsyncEpisode.run``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from corral.events import Event, EventStore, TraceContext, default_store_path
from corral.harness import DEFAULT_STORE, AsyncSandboxLike, Harness, SandboxLike, SyncSandbox
from corral.integrations._episode import AsyncEpisode, Episode
from corral.policy import Policy
from corral.respond import PenaltyRegistry, Responder, SummaryLogger
from corral.sandbox import new_id

# sandbox id -> a new (not yet started, for async) sandbox of the one interface every backend offers
SandboxFactory = Callable[[str], SandboxLike]
AsyncSandboxFactory = Callable[[str], AsyncSandboxLike]
StoreArg = EventStore | str | None


class Guard:
    """Corral for one training run; thread-safe, one per process is enough.

    By default sandboxes are local and share one Harness (rules compiled once, one
    egress proxy) and events go to ``$CORRAL_HOME/events.db`` (``store=None``: nowhere;
    an ``EventStore`` or a path: there). Pass ``sandbox_factory`` / ``async_sandbox_factory``
    to use a node service or a Ray pool; a sync episode over an async factory runs on
    Corral's portal loop.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        run_id: str | None = None,
        store: StoreArg = DEFAULT_STORE,
        event_sinks: Sequence[Callable[[Event], None]] = (),
        loggers: Sequence[SummaryLogger] = (),
        registry: PenaltyRegistry | None = None,
        sandbox_factory: SandboxFactory | None = None,
        async_sandbox_factory: AsyncSandboxFactory | None = None,
    ) -> None:
        self.policy = policy if policy is not None else Policy.default()
        self.run_id = run_id or new_id("run")
        self._own_store: EventStore | None = None
        if isinstance(store, str) and store != DEFAULT_STORE:
            store = self._own_store = EventStore(store)
        self._given_store = store if isinstance(store, EventStore) else None
        self._harness: Harness | None = None
        if sandbox_factory is None and async_sandbox_factory is None:
            self._harness = Harness(self.policy, store=store, sinks=event_sinks)
            self.store = self._harness.store
            async_sandbox_factory = self._harness.async_sandbox
        else:  # the sandboxes record their own events; the responder's decisions are recorded here
            if store == DEFAULT_STORE:
                store = self._own_store = EventStore(default_store_path(self.policy))
            self.store = store if isinstance(store, EventStore) else None
        self._factory = sandbox_factory
        self._async_factory = async_sandbox_factory
        sinks = list(event_sinks) + ([self.store.append] if self.store is not None else [])
        self.responder = Responder(self.policy, event_sinks=sinks, loggers=loggers, registry=registry)
        self._lock = threading.Lock()
        self._open = 0
        self._closed = False

    @property
    def harness(self) -> Harness | None:
        """The shared local Harness (None when sandboxes come from a factory)."""
        return self._harness

    def _context(self, episode_id: str | None, step: int | None) -> TraceContext:
        return TraceContext(run_id=self.run_id, step=step, episode_id=episode_id or new_id("ep"))

    def _opened(self) -> None:
        with self._lock:
            self._open += 1

    def _episode_closed(self) -> None:
        with self._lock:
            self._open -= 1

    @property
    def open_episodes(self) -> int:
        """Episodes whose sandbox is not closed yet: a trainer that ends with more than 0 leaked some."""
        with self._lock:
            return self._open

    def episode(
        self,
        episode_id: str | None = None,
        *,
        step: int | None = None,
        image: str | None = None,
        workspace: str | os.PathLike[str] | None = None,
    ) -> Episode:
        """A guarded episode for synchronous code; its sandbox is built now."""
        sid = new_id("sb")
        sandbox: SandboxLike
        if self._harness is not None:
            sandbox = self._harness.sandbox(sid, image=image, workspace=workspace)
        elif self._factory is not None:
            self._no_image_args(image, workspace)
            sandbox = self._factory(sid)
        else:
            assert self._async_factory is not None
            self._no_image_args(image, workspace)
            sandbox = SyncSandbox(self._async_factory(sid))
        self._opened()
        return Episode(self, sandbox, self._context(episode_id, step))

    def async_episode(
        self,
        episode_id: str | None = None,
        *,
        step: int | None = None,
        image: str | None = None,
        workspace: str | os.PathLike[str] | None = None,
    ) -> AsyncEpisode:
        """A guarded episode for asyncio code; its sandbox starts on first use, on the caller's loop."""
        sid = new_id("sb")
        sandbox: AsyncSandboxLike
        if self._harness is not None:
            sandbox = self._harness.async_sandbox(sid, image=image, workspace=workspace)
        elif self._async_factory is not None:
            self._no_image_args(image, workspace)
            sandbox = self._async_factory(sid)
        else:
            raise TypeError(
                "this Guard has only a synchronous sandbox_factory; async episodes need async_sandbox_factory"
            )
        self._opened()
        return AsyncEpisode(self, sandbox, self._context(episode_id, step))

    @staticmethod
    def _no_image_args(image: str | None, workspace: object) -> None:
        if image is not None or workspace is not None:
            raise TypeError("image= and workspace= go to the sandbox factory when the Guard has one")

    @property
    def halted(self) -> bool:
        """The circuit breaker halted the run: every later call is refused."""
        return self.responder.halted

    def close(self) -> None:
        """Stop the responder and the shared harness, and flush the store; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.responder.close()
        if self._given_store is not None:
            self._given_store.flush()
        if self._harness is not None:
            self._harness.close()  # and the default store, which it owns
        if self._own_store is not None:
            self._own_store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
