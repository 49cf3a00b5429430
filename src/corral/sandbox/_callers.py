"""What the Jail tells the layers beside it around each call: the egress layer's trace context and the
collectors' lifecycle (finished, then released once no process of the call is left)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from corral.events import TraceContext
from corral.sandbox._scope import CallObserver, CallScope, NetworkAttachment


class NetContexts:
    """The egress attachment knows one trace context at a time; with concurrent calls it carries the
    newest live one, and falls back to an older live one when the newest ends."""

    def __init__(self, network: NetworkAttachment) -> None:
        self.network = network
        self._live: list[TraceContext] = []

    def begin(self, ctx: TraceContext) -> None:
        self._live.append(ctx)
        self.network.begin_call(ctx)

    def end(self, ctx: TraceContext) -> None:
        with contextlib.suppress(ValueError):
            self._live.remove(ctx)
        if self._live:
            self.network.begin_call(self._live[-1])
        else:
            self.network.end_call()


async def finish_call(observers: Sequence[CallObserver], scope: CallScope, *, lingering: bool) -> None:
    """Tell every collector the call returned, even when one of them fails (the first error is raised).
    Cancelled meanwhile (the sandbox is closing), every collector still forgets the call."""
    errors: list[BaseException] = []
    for i, obs in enumerate(observers):
        try:
            await obs.call_finished(scope, lingering=lingering)
            if not lingering:
                obs.scope_released(scope)
        except Exception as exc:
            errors.append(exc)
        except BaseException:
            if not lingering:
                for rest in observers[i:]:
                    with contextlib.suppress(Exception):
                        rest.scope_released(scope)
            raise
    if errors:
        raise errors[0]


def release_call(observers: Sequence[CallObserver], scope: CallScope) -> None:
    for obs in observers:
        obs.scope_released(scope)
