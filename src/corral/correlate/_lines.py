"""Bounded line reading for logs that may be hostile: long lines, broken gzip, decompression bombs.

Python's own line iteration keeps a whole line in memory however long it is, and
a truncated ``.gz`` raises ``EOFError`` half way through. Here a line longer
than ``MAX_LINE_BYTES`` is counted as malformed and skipped without being held,
a compressed stream that ends early or is corrupt ends the file with one
malformed entry (what was read before it is kept), and a stream that inflates
more than ``MAX_INFLATE_RATIO`` times is stopped as a decompression bomb.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol

MAX_LINE_BYTES = 1 << 20  # a flow or alert record is a few hundred bytes; a JSON event a few KiB
CHUNK_BYTES = 1 << 16
# A stream may inflate at most this many times its compressed size once past BOMB_FLOOR_BYTES.
MAX_INFLATE_RATIO = 250  # flow logs compress 10-30 times; a deflate bomb about 1000
BOMB_FLOOR_BYTES = 64 << 20
# Whole-document formats (Azure blobs, OTLP documents, GCP JSON arrays) are parsed at once.
MAX_DOCUMENT_BYTES = 128 << 20

_STREAM_ERRORS = (EOFError, OSError, zlib.error)


class BadLineSink(Protocol):
    def bad(self, line: int, text: str, reason: str) -> None: ...


def is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == b"\x1f\x8b"


class _Counted(io.RawIOBase):
    """Counts the compressed bytes a GzipFile pulls, for the inflate-ratio check."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.count += n
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


class ByteSource:
    """A log file's bytes, gunzipped when its first bytes say gzip; stream errors become ``error``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: str | None = None
        self._raw = path.open("rb")
        self._counted: _Counted | None = None
        self._out = 0
        if self._raw.read(2) == b"\x1f\x8b":
            self._raw.seek(0)
            self._counted = _Counted(self._raw)
            self._stream: IO[bytes] = gzip.GzipFile(fileobj=self._counted)  # type: ignore[assignment]
        else:
            self._raw.seek(0)
            self._stream = self._raw

    @property
    def compressed(self) -> bool:
        return self._counted is not None

    def read(self, n: int = CHUNK_BYTES) -> bytes:
        """Up to ``n`` bytes; ``b""`` at the end or after an error (then ``error`` says what)."""
        if self.error is not None:
            return b""
        try:
            data = self._stream.read(n)
        except _STREAM_ERRORS as exc:
            what = "compressed stream is truncated or corrupt" if self.compressed else "read failed"
            self.error = f"{what}: {type(exc).__name__}: {exc}"
            return b""
        self._out += len(data)
        if (
            self._counted is not None
            and self._out > BOMB_FLOOR_BYTES
            and self._out > MAX_INFLATE_RATIO * max(1, self._counted.count)
        ):
            self.error = (
                f"compressed stream inflates over {MAX_INFLATE_RATIO} times its size "
                f"({self._counted.count} bytes to more than {self._out}): refused as a decompression bomb"
            )
            return b""
        return data

    def read_all(self, limit: int = MAX_DOCUMENT_BYTES) -> bytes | None:
        """The whole content if it is at most ``limit`` bytes, else None (``error`` says why)."""
        parts: list[bytes] = []
        total = 0
        while chunk := self.read(CHUNK_BYTES * 16):
            total += len(chunk)
            if total > limit:
                self.error = f"document larger than {limit} bytes: split it into smaller files"
                return None
            parts.append(chunk)
        return None if self.error is not None else b"".join(parts)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._raw.close()

    def __enter__(self) -> ByteSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LineSplitter:
    """Splits a byte stream into decoded lines, holding at most ``max_line`` bytes of one line.

    ``feed`` returns complete lines as ``(number, text)``; a line over the bound is
    reported to ``sink`` (once, with its number) and its bytes dropped up to the next
    newline. ``finish`` returns the last line when the stream did not end with a newline.
    """

    def __init__(self, sink: BadLineSink, max_line: int = MAX_LINE_BYTES, first_line: int = 1) -> None:
        self.sink = sink
        self.max_line = max_line
        self.next_line = first_line
        self._partial: list[bytes] = []
        self._partial_len = 0
        self._overlong: bytes | None = None  # the start of a line found too long, as a sample

    @property
    def pending_bytes(self) -> int:
        return self._partial_len

    def feed(self, data: bytes) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        if not data:
            return out
        pieces = data.split(b"\n")
        last = pieces.pop()  # after the final newline (b"" when data ends with one)
        for piece in pieces:
            self._line_done(piece, out)
        if last:
            self._hold(last)
        return out

    def finish(self) -> list[tuple[int, str]]:
        """The unterminated last line, if any (at the end of a file that will not grow)."""
        out: list[tuple[int, str]] = []
        if self._partial or self._overlong is not None:
            self._line_done(b"", out)
        return out

    def _hold(self, piece: bytes) -> None:
        if self._overlong is not None:
            return
        self._partial_len += len(piece)
        if self._partial_len > self.max_line:
            self._overlong = (b"".join(self._partial) + piece[:300])[:300]
            self._partial, self._partial_len = [], 0
            return
        self._partial.append(piece)

    def _line_done(self, piece: bytes, out: list[tuple[int, str]]) -> None:
        n = self.next_line
        self.next_line += 1
        sample = self._overlong
        if sample is None and self._partial:
            self._partial.append(piece)
            piece = b"".join(self._partial)
        self._partial, self._partial_len, self._overlong = [], 0, None
        if sample is None and len(piece) > self.max_line:
            sample = piece[:300]
        if sample is not None:
            self.sink.bad(n, sample.decode("utf-8", "replace"), f"line longer than {self.max_line} bytes")
            return
        if piece.endswith(b"\r"):
            piece = piece[:-1]
        out.append((n, piece.decode("utf-8", "replace")))


def iter_lines(path: Path, sink: BadLineSink, *, max_line: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """Every line of a (possibly gzipped) file as ``(number, text)``, bounded; problems go to ``sink``."""
    with ByteSource(path) as src:
        split = LineSplitter(sink, max_line)
        while chunk := src.read():
            yield from split.feed(chunk)
        yield from split.finish()
        if src.error is not None:
            sink.bad(split.next_line, "", src.error)


def head_lines(path: Path, n: int = 20, max_bytes: int = 65536) -> list[str]:
    """The first non-empty lines of a file (stripped), for format detection; reads at most ``max_bytes``."""

    class _Quiet:
        def bad(self, line: int, text: str, reason: str) -> None:
            pass

    out: list[str] = []
    with ByteSource(path) as src:
        split = LineSplitter(_Quiet(), max_bytes)
        data = src.read(max_bytes)
        lines = split.feed(data)
        if len(data) < max_bytes:
            lines += split.finish()
    for _, text in lines:
        s = text.strip()
        if s:
            out.append(s)
        if len(out) >= n:
            break
    return out
