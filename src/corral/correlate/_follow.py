"""Following a log file as it grows, like ``tail -F``: rotation, truncation and gzip'd files.

``FileFollower.poll()`` returns the complete lines written since the last poll.
A file that is renamed away (logrotate's default) is read to its end before the
new file at the path is opened from its start; a file truncated in place
(``copytruncate``) is read again from its start; a missing file is waited for.
A gzip'd file is a finished file: it is read once, whole, and never again. Line
numbers count from the start of each file (the first poll of a file that
existed before the watch started counts the lines it skips), so the evidence
``file:line`` points at the right line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from corral.correlate._lines import MAX_LINE_BYTES, BadLineSink, ByteSource, LineSplitter

READ_BYTES = 8 << 20  # per poll and file, so that one busy file cannot starve the others
_COUNT_CHUNK = 1 << 20


@dataclass
class FollowCounters:
    rotations: int = 0
    truncations: int = 0
    compressed_files: int = 0


class FileFollower:
    """One followed path; not thread-safe (one watcher thread polls it)."""

    def __init__(
        self, path: Path, sink: BadLineSink, *, from_start: bool = False, max_line: int = MAX_LINE_BYTES
    ) -> None:
        self.path = Path(path)
        self.sink = sink
        self.max_line = max_line
        self.counters = FollowCounters()
        self._from_start = from_start
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self._offset = 0
        self._split = LineSplitter(sink, max_line)
        self._done_gz: set[tuple[int, int]] = set()
        self._gz: tuple[ByteSource, LineSplitter] | None = None  # a compressed file being read
        self._first = True
        if not from_start:
            # Where "new" starts is fixed now, not at the first poll: lines written in between count.
            try:
                st = os.stat(self.path)
            except OSError:
                self._first = False
            else:
                self._pin((st.st_dev, st.st_ino))

    @property
    def compressed(self) -> bool:
        return bool(self._done_gz)

    def head(self, max_bytes: int = 65536) -> list[str]:
        """The file's first lines as they are now (for format detection and header state)."""
        try:
            with ByteSource(self.path) as src:
                data = src.read(max_bytes)
        except OSError:
            return []

        class _Quiet:
            def bad(self, line: int, text: str, reason: str) -> None:
                pass

        split = LineSplitter(_Quiet(), max_bytes)
        lines = split.feed(data)
        if len(data) < max_bytes:
            lines += split.finish()
        return [t for _, t in lines]

    def poll(self) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        if self._gz is not None:
            return self._read_gzip()
        try:
            st = os.stat(self.path)
            at_path: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            at_path = None
        if self._fd is None:
            if at_path is not None and at_path not in self._done_gz:
                out += self._open(at_path)
            self._first = False
            return out
        fst = os.fstat(self._fd)
        if fst.st_size < self._offset:  # truncated in place: start over
            self.counters.truncations += 1
            self._offset = 0
            self._split = LineSplitter(self.sink, self.max_line)
        got, drained = self._read(self._fd)
        out += got
        if at_path != self._ino and drained:  # renamed away (or removed): finish it, go to the new one
            out += self._split.finish()
            self._close()
            self.counters.rotations += 1
            if at_path is not None and at_path not in self._done_gz:
                out += self._open(at_path)
        return out

    def _pin(self, ino: tuple[int, int]) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._first = False
            return
        if os.pread(fd, 2, 0) == b"\x1f\x8b":
            os.close(fd)  # compressed: read once, whole, at the first poll
            return
        self._fd, self._ino = fd, ino
        self._skip_existing(fd)
        self._first = False

    def _open(self, ino: tuple[int, int]) -> list[tuple[int, str]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return []
        if os.pread(fd, 2, 0) == b"\x1f\x8b":  # a finished, compressed file: read it once, whole
            os.close(fd)
            self._done_gz.add(ino)
            self.counters.compressed_files += 1
            self._gz = (ByteSource(self.path), LineSplitter(self.sink, self.max_line))
            return self._read_gzip()
        self._fd, self._ino = fd, ino
        self._offset = 0
        self._split = LineSplitter(self.sink, self.max_line)
        if self._first and not self._from_start:
            self._skip_existing(fd)
        got, _ = self._read(fd)
        return got

    def _skip_existing(self, fd: int) -> None:
        """Start after the last complete line already there, counting the lines skipped."""
        size = os.fstat(fd).st_size
        lines = 0
        pos = 0
        last_nl = -1
        while pos < size:
            chunk = os.pread(fd, min(_COUNT_CHUNK, size - pos), pos)
            if not chunk:
                break
            lines += chunk.count(b"\n")
            i = chunk.rfind(b"\n")
            if i >= 0:
                last_nl = pos + i
            pos += len(chunk)
        self._offset = last_nl + 1
        self._split = LineSplitter(self.sink, self.max_line, first_line=lines + 1)

    def _read(self, fd: int) -> tuple[list[tuple[int, str]], bool]:
        """New lines from ``fd``; ``drained`` when it reached the end of what is there."""
        out: list[tuple[int, str]] = []
        budget = READ_BYTES
        while budget > 0:
            chunk = os.pread(fd, min(1 << 20, budget), self._offset)
            if not chunk:
                return out, True
            self._offset += len(chunk)
            budget -= len(chunk)
            out += self._split.feed(chunk)
        return out, False

    def _read_gzip(self) -> list[tuple[int, str]]:
        assert self._gz is not None
        src, split = self._gz
        out: list[tuple[int, str]] = []
        budget = READ_BYTES
        while budget > 0:
            chunk = src.read(1 << 20)
            if not chunk:
                out += split.finish()
                if src.error is not None:
                    self.sink.bad(split.next_line, "", src.error)
                src.close()
                self._gz = None
                break
            budget -= len(chunk)
            out += split.feed(chunk)
        return out

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = self._ino = None

    def close(self) -> None:
        self._close()
        if self._gz is not None:
            self._gz[0].close()
            self._gz = None
