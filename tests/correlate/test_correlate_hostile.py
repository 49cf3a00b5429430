"""Hostile input: each log reader counts every bad line and goes on, in bounded time and memory.

The corpus (``hostile_corpus.py``) holds inputs that crashed or hung the readers
before; the property tests generate more with hypothesis on a fixed budget: a
valid record with one value replaced by something hostile (a 40-digit number, a
NaN, a list, deep nesting, control characters), between two valid lines that
must both survive.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hostile_corpus import CASES, GOOD, Case, good_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.correlate import LogReader, ReadStats, iter_log, log_formats, make_reader
from corral.correlate._lines import LineSplitter, head_lines, iter_lines
from corral.correlate._record import MAX_EPOCH_S, parse_time, proto_name, to_int
from corral.errors import CorralError

BUDGET = settings(
    max_examples=40,
    deadline=5000,  # a hang or a quadratic blow-up shows as a deadline failure
    derandomize=True,  # the same examples in every run: a fixed budget in CI
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _rows(path: Path, fmt: str) -> tuple[ReadStats, list[dict[str, Any]]]:
    stats, batches = iter_log(path, make_reader(fmt))
    return stats, [r for b in batches for r in b.to_pylist()]


def _valid(row: dict[str, Any]) -> None:
    for k in ("src_port", "dst_port", "reply_src_port", "reply_dst_port"):
        assert row[k] is None or 0 <= row[k] <= 65535, (k, row[k])
    for k in ("start", "end"):
        assert row[k] is None or (math.isfinite(row[k]) and 0 <= row[k] <= MAX_EPOCH_S), (k, row[k])
    for k in ("bytes", "packets"):
        assert row[k] is None or row[k] >= 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_of_crashing_inputs(case: Case, tmp_path: Path) -> None:
    path = tmp_path / case.name
    case.build(path)
    stats, rows = _rows(path, case.format)  # before hardening: see case.before
    for r in rows:
        _valid(r)
    if case.records < 0:  # a truncated compressed file: what came before the break is kept
        assert rows and stats.malformed >= 1
        assert any("truncated or corrupt" in s.reason for s in stats.samples)
    else:
        assert (len(rows), stats.malformed) == (case.records, case.malformed), stats.samples
    assert stats.records == len(rows)
    assert all(s.reason for s in stats.samples) and len(stats.samples) == min(stats.malformed, 10)


def test_every_reader_is_in_the_property_tests() -> None:
    covered = set(GOOD) | {
        "aws-vpc-flow",
        "conntrack",
        "netfilter",
        "alibaba-cloudfirewall",
        "azure-nsg-flow",
    }
    assert covered == set(log_formats())


# -- property tests --------------------------------------------------------------------------

_NUMBERS = st.one_of(
    st.integers(min_value=-(10**45), max_value=10**45),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 65536, 2**63, 2**64, 1e300, -0.0]),
)
_HOSTILE = st.one_of(
    _NUMBERS,
    st.text(max_size=40),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.integers(min_value=2000, max_value=60_000).map(lambda d: _Deep(d)),
)


class _Deep:
    """Nesting spliced in as raw JSON text (json.dumps would recurse on it)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth


def _leaves(obj: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for k, v in obj.items():
        out.append((*prefix, k))
        if isinstance(v, dict):
            out.extend(_leaves(v, (*prefix, k)))
    return out


def _json_with(fmt: str, path: tuple[str, ...], value: Any) -> str:
    obj = json.loads(json.dumps(GOOD[fmt]))
    cur = obj
    for k in path[:-1]:
        cur = cur[k]
    marker = "__DEEP__"
    cur[path[-1]] = marker if isinstance(value, _Deep) else value
    text = json.dumps(obj)
    if isinstance(value, _Deep):
        text = text.replace(f'"{marker}"', "[" * value.depth + "]" * value.depth)
    return text


def _check_sandwich(tmp_path: Path, fmt: str, bad: str, *, gz: bool = False, header: str = "") -> None:
    path = tmp_path / ("log.gz" if gz else "log")
    good = good_line(fmt) if fmt != "alibaba-cloudfirewall" else _FW_ROW
    text = f"{header}{good}\n{bad}\n{good}\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode("utf-8", "surrogateescape")))
    else:
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
    try:
        stats, rows = _rows(path, fmt)
    except CorralError:
        return  # a clear error of Corral's own is allowed; anything else fails the test
    for r in rows:
        _valid(r)
    first = 2 if header else 1
    lines = {r["line"] for r in rows}
    assert {first, first + 2} <= lines, (stats.samples, bad[:200])  # neither good neighbour was lost
    bad_lines = bad.count("\n") + 1
    assert stats.records == len(rows)
    assert len(rows) + stats.malformed + stats.ignored <= 2 + bad_lines + (1 if header else 0) + 1


@pytest.mark.parametrize("fmt", sorted(GOOD))
@BUDGET
@given(data=st.data())
def test_json_readers_survive_one_hostile_value(fmt: str, data: st.DataObject, tmp_path_factory: Any) -> None:
    path = data.draw(st.sampled_from(_leaves(GOOD[fmt])), label="field")
    value = data.draw(_HOSTILE, label="value")
    _check_sandwich(tmp_path_factory.mktemp("j"), fmt, _json_with(fmt, path, value))


_TEXT_LINES = {"aws-vpc-flow": " ", "conntrack": " ", "netfilter": " "}


@pytest.mark.parametrize("fmt", sorted(_TEXT_LINES))
@BUDGET
@given(data=st.data())
def test_text_readers_survive_one_hostile_field(fmt: str, data: st.DataObject, tmp_path_factory: Any) -> None:
    tokens = good_line(fmt).split(" ")
    i = data.draw(st.integers(0, len(tokens) - 1), label="field")
    key, eq, _ = tokens[i].partition("=")
    value = data.draw(
        st.one_of(
            _NUMBERS.map(str),
            st.text(alphabet=st.characters(blacklist_characters="\n"), max_size=60),
            st.integers(100, 5000).map(lambda n: "9" * n),
        ),
        label="value",
    )
    tokens[i] = f"{key}={value}" if eq else value
    _check_sandwich(tmp_path_factory.mktemp("t"), fmt, " ".join(tokens), gz=data.draw(st.booleans()))


_FW_HEADER = "__time__,__topic__,src_ip,dst_ip,src_port,dst_port,rule_result,ip_protocol,start_time"
_FW_ROW = "1795000000,cloudfirewall_access_log,192.0.2.10,203.0.113.50,61001,3333,drop,tcp,1795000000"


@BUDGET
@given(data=st.data())
def test_csv_reader_survives_one_hostile_cell(data: st.DataObject, tmp_path_factory: Any) -> None:
    cells = _FW_ROW.split(",")
    i = data.draw(st.integers(0, len(cells) - 1))
    cells[i] = data.draw(
        st.one_of(
            _NUMBERS.map(str), st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=60)
        )
    )
    _check_sandwich(
        tmp_path_factory.mktemp("c"), "alibaba-cloudfirewall", ",".join(cells), header=_FW_HEADER + "\n"
    )


@pytest.mark.parametrize("fmt", sorted(set(log_formats()) - {"azure-nsg-flow"}))
@BUDGET
@given(raw=st.binary(max_size=300))
def test_any_bytes_are_a_counted_line(fmt: str, raw: bytes, tmp_path_factory: Any) -> None:
    bad = raw.replace(b"\n", b" ").decode("utf-8", "surrogateescape")
    if fmt == "alibaba-cloudfirewall":
        _check_sandwich(tmp_path_factory.mktemp("b"), fmt, bad, header=_FW_HEADER + "\n")
    else:
        _check_sandwich(tmp_path_factory.mktemp("b"), fmt, bad)


_TUPLE = "1795000000,192.0.2.101,203.0.113.50,40312,3333,T,O,D,B,,,,"


@BUDGET
@given(data=st.data())
def test_azure_documents_survive_hostile_tuples_and_shapes(
    data: st.DataObject, tmp_path_factory: Any
) -> None:
    fields = _TUPLE.split(",")
    i = data.draw(st.integers(0, len(fields) - 1))
    fields[i] = data.draw(st.one_of(_NUMBERS.map(str), st.text(max_size=30)))
    odd = data.draw(_HOSTILE.filter(lambda v: not isinstance(v, _Deep)))
    doc = {
        "records": [
            {"properties": {"flows": [{"rule": "r", "flows": [{"mac": "m", "flowTuples": [_TUPLE]}]}]}},
            {
                "properties": {
                    "flows": [{"rule": "r", "flows": [{"mac": "m", "flowTuples": [",".join(fields)]}]}]
                }
            },
            {"properties": {"flows": odd}},
            {"properties": {"flows": [{"rule": "r", "flows": [{"mac": "m", "flowTuples": [_TUPLE]}]}]}},
        ]
    }
    p = tmp_path_factory.mktemp("a") / "nsg.json"
    p.write_text(json.dumps(doc))
    _, rows = _rows(p, "azure-nsg-flow")
    assert {1, 4} <= {r["line"] for r in rows}
    for r in rows:
        _valid(r)


@BUDGET
@given(value=st.one_of(_HOSTILE.filter(lambda v: not isinstance(v, _Deep)), st.text(max_size=80)))
def test_value_parsers_raise_only_value_error(value: Any) -> None:
    for fn in (parse_time, to_int, proto_name):
        try:
            out = fn(value)
        except ValueError:
            continue
        if fn is parse_time and out is not None:
            assert isinstance(out, float)


# -- the bounded line reader ---------------------------------------------------------------


@BUDGET
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    cuts=st.lists(st.integers(0, 2000), max_size=6),
)
def test_line_splitter_is_independent_of_chunking(lines: list[bytes], cuts: list[int]) -> None:
    data = b"".join(x + b"\n" for x in lines)
    expected = [
        (i, (x[:-1] if x.endswith(b"\r") else x).decode("utf-8", "replace")) for i, x in enumerate(lines, 1)
    ]
    for points in ([], sorted({c % (len(data) + 1) for c in cuts})):
        split = LineSplitter(ReadStats("x"), max_line=30)
        got: list[tuple[int, str]] = []
        prev = 0
        for c in [*points, len(data)]:
            got += split.feed(data[prev:c])
            prev = c
        got += split.finish()
        assert got == [(n, t) for n, t in expected if len(lines[n - 1]) <= 30]


def test_long_line_is_not_held_and_is_counted(tmp_path: Path) -> None:
    p = tmp_path / "big.log"
    with p.open("wb") as f:
        f.write(b"first\n")
        for _ in range(64):
            f.write(b"y" * (1 << 20))  # one 64 MiB line
        f.write(b"\nlast\n")
    stats = ReadStats(str(p))
    assert list(iter_lines(p, stats)) == [(1, "first"), (3, "last")]
    assert stats.malformed == 1 and stats.samples[0].line == 2 and "longer than" in stats.samples[0].reason
    assert head_lines(p) == ["first"]


def test_gzip_bomb_is_stopped(tmp_path: Path) -> None:
    p = tmp_path / "bomb.log.gz"
    line = b"a" * 4095 + b"\n"
    with gzip.open(p, "wb", compresslevel=9) as f:
        for _ in range(200):  # 200 MiB of one repeated line: about 200 KiB compressed
            f.write(line * 256)
    assert p.stat().st_size < 1 << 20
    stats = ReadStats(str(p))
    n = sum(1 for _ in iter_lines(p, stats))
    assert 0 < n < 200 * 256 // 2  # stopped well before the end
    assert stats.malformed == 1 and "decompression bomb" in stats.samples[0].reason


def test_reader_without_line_parser_must_read() -> None:
    class Doc(LogReader):
        name = "doc-test"
        title = "x"

        def sniff(self, head: list[str]) -> bool:
            return False

    with pytest.raises(NotImplementedError):
        list(Doc().read(Path("/nonexistent"), ReadStats("x")))
