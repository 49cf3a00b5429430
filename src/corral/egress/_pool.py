"""The warm pool of sandbox network namespaces of one address block.

``take`` hands out a ready slot (warm when the pool has one) and schedules a refill;
``give_back`` keeps the slot warm or schedules its teardown (~25 ms of veth/RCU work),
both off the caller's path on a worker thread. Slot indices are reused once freed.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable

from corral.egress._netns import Block, Slot, create_slot, destroy_slot
from corral.errors import EgressError


class SlotPool:
    def __init__(
        self,
        block: Block,
        size: int,
        on_create: Callable[[Slot], None],
        on_destroy: Callable[[Slot], None],
        report: Callable[[str], None],
    ) -> None:
        self.block = block
        self.size = size
        self._on_create, self._on_destroy, self._report = on_create, on_destroy, report
        self._lock = threading.Lock()
        self._warm: list[Slot] = []
        self._free: list[int] = []
        self._next = 1
        self.live: dict[int, Slot] = {}  # every slot that exists, by index
        self._closed = False
        self._work: queue.SimpleQueue[Slot | str | None] = queue.SimpleQueue()  # None stops the worker
        self._worker = threading.Thread(target=self._run, name="corral-egress-pool", daemon=True)

    def start(self) -> None:
        self._worker.start()
        for _ in range(self.size):
            slot = self._create()
            with self._lock:
                self._warm.append(slot)

    def _create(self) -> Slot:
        with self._lock:
            if self._free:
                index = self._free.pop()
            elif self._next <= self.block.capacity:
                index, self._next = self._next, self._next + 1
            else:
                raise EgressError(f"all {self.block.capacity} sandbox network slots are in use")
        try:
            slot = create_slot(self.block, index)
        except BaseException:
            with self._lock:
                self._free.append(index)
            raise
        self.live[index] = slot
        self._on_create(slot)
        return slot

    def destroy(self, slot: Slot) -> None:
        with contextlib.suppress(Exception):
            self._on_destroy(slot)
        self.live.pop(slot.index, None)
        destroy_slot(slot)
        with self._lock:
            self._free.append(slot.index)

    def take(self) -> Slot:
        with self._lock:
            slot = self._warm.pop() if self._warm else None
        if slot is None:
            slot = self._create()
        self._work.put("refill")
        return slot

    def give_back(self, slot: Slot) -> None:
        with self._lock:
            keep = not self._closed and len(self._warm) < self.size
            if keep:
                self._warm.append(slot)
        if not keep and not self._closed:
            self._work.put(slot)

    def refill(self) -> None:
        while not self._closed:
            with self._lock:
                if len(self._warm) >= self.size:
                    return
            slot = self._create()
            with self._lock:
                self._warm.append(slot)

    def _run(self) -> None:
        while (item := self._work.get()) is not None:
            try:
                if isinstance(item, Slot):
                    self.destroy(item)
                else:
                    self.refill()
            except Exception as exc:  # a failed refill only makes the next attach cold; say so
                self._report(f"pool upkeep failed: {exc}")

    def stop_worker(self) -> None:
        with self._lock:
            self._closed = True
        if self._worker.is_alive():
            self._work.put(None)
            self._worker.join(30)

    def destroy_all(self) -> None:
        for slot in list(self.live.values()):
            destroy_slot(slot)
        self.live.clear()
        self._warm.clear()
