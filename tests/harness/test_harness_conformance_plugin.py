"""The conformance plugin as a backend author meets it: one test per check, gaps as strict xfails."""

from __future__ import annotations

import pytest

import corral.harness.conformance  # noqa: F401  (imported here, so the inline runs share one copy)
from corral import Policy

pytest_plugins = ["pytester"]
Policy.default()  # its YAML parser's C extension too: pytester drops modules first imported inside a run

# A backend with a real gap: its stream hands out the output only once the call has ended.
BACKEND = """
import pytest
from corral import AsyncSandbox, Policy
from corral.harness.conformance import ConformanceSuite

pytest_plugins = ["corral.harness.conformance"]
POLICY = Policy.default().with_overrides(detection={"enabled": False})


class Buffered(AsyncSandbox):
    async def stream(self, command, ctx=None, **kw):
        items = [item async for item in super().stream(command, ctx, **kw)]
        for item in items:
            yield item


class TestBuffered(ConformanceSuite):
    known_gaps = GAPS
    variants = ("async",)

    @pytest.fixture
    def async_factory(self):
        return lambda: Buffered(POLICY, store=None)
"""


def _suite(pytester: pytest.Pytester, gaps: dict[str, str], *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_backend=BACKEND.replace("GAPS", repr(gaps)))
    return pytester.runpytest("-p", "no:cacheprovider", "-rxX", *args)


def test_one_test_per_check_and_variant(pytester: pytest.Pytester) -> None:
    r = _suite(pytester, {}, "--collect-only", "-q")
    from corral.harness import CHECKS

    ids = [line.split("[", 1)[1].rstrip("]") for line in r.outlines if "test_conformance[" in line]
    assert ids == [f"async-{c.name}" for c in CHECKS]


def test_a_declared_gap_is_an_expected_failure(pytester: pytest.Pytester) -> None:
    r = _suite(pytester, {"stream-live": "output is buffered"}, "-k", "stream-live or stream-order")
    r.assert_outcomes(passed=1, xfailed=1)
    r.stdout.fnmatch_lines(["*XFAIL*async-stream-live*output is buffered*"])


def test_an_undeclared_gap_fails_with_the_check_s_reason(pytester: pytest.Pytester) -> None:
    r = _suite(pytester, {}, "-k", "stream-live")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*ConformanceFailure: output arrived only when the call ended*"])


def test_a_gap_that_starts_passing_is_reported(pytester: pytest.Pytester) -> None:
    r = _suite(pytester, {"stream-order": "thought broken"}, "-k", "stream-order")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(
        ["*test_conformance[[]async-stream-order[]]*", "[[]XPASS(strict)[]]*thought broken"]
    )


def test_a_gap_naming_no_check_is_refused(pytester: pytest.Pytester) -> None:
    r = _suite(pytester, {"stream-lvie": "typo"}, "-q")
    assert r.ret != 0
    r.stdout.re_match_lines([r".*TestBuffered.known_gaps names checks that do not exist: \['stream-lvie'\]"])


def test_without_the_plugin_the_error_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_backend=BACKEND.replace("GAPS", "{}").replace(
            'pytest_plugins = ["corral.harness.conformance"]', ""
        )
    )
    r = pytester.runpytest("-p", "no:cacheprovider")
    assert r.ret != 0
    r.stdout.fnmatch_lines(["*ConformanceSuite needs its plugin*"])
