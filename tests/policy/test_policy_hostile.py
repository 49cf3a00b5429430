"""Hostile policy files: every one is a PolicyError naming file and line, never a hang or a crash.

The corpus in tests/data/policy_corpus holds inputs that crashed or hung earlier loaders (alias
bombs, recursive aliases, deep nesting, bad scalar tags...), each with the message it must give.
Hypothesis then throws generated YAML at the loader with a fixed budget (``CORRAL_FUZZ_EXAMPLES``
examples per property, 150 by default; derandomised under CI so a run is reproducible).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from corral import Policy
from corral.errors import PolicyError
from corral.policy import load_policy_file, load_policy_text

CORPUS = Path(__file__).resolve().parents[1] / "data" / "policy_corpus"
EXPECTED: dict[str, list[str]] = json.loads((CORPUS / "expected.json").read_text())
PARSERS = [pytest.param(True, id="libyaml"), pytest.param(False, id="pure-python")]

FUZZ = settings(
    max_examples=int(os.environ.get("CORRAL_FUZZ_EXAMPLES", "150")),
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


def _load(path: Path, libyaml: bool) -> Policy:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return load_policy_file(path)  # the file reader reports the line of the bad byte
    return load_policy_text(text, str(path), libyaml=libyaml)


def test_the_corpus_is_complete() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("libyaml", PARSERS)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_input_is_a_policy_error_naming_file_and_line(name: str, libyaml: bool) -> None:
    path = CORPUS / name
    with pytest.raises(PolicyError) as info:
        _load(path, libyaml)
    msg = str(info.value)
    for part in EXPECTED[name]:
        assert (f"{path}{part}" if part.startswith(":") else part) in msg, msg
    assert f"{path}:" in msg, msg  # every problem names the file and a line


_BOUNDED = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from corral.errors import PolicyError
    from corral.policy import load_policy_file
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # a bomb that expanded would die here
    for path in sorted(Path(sys.argv[1]).glob("*.yaml")):
        try:
            load_policy_file(path)
        except PolicyError:
            print(path.name, "refused", flush=True)
    """
)


def test_corpus_loads_within_bounded_memory_and_time() -> None:
    """Every hostile file is refused in a child limited to 1 GiB of address space, without hanging."""
    r = subprocess.run(
        [sys.executable, "-c", _BOUNDED, str(CORPUS)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:-1] == [f"{n} refused" for n in sorted(EXPECTED)]


def test_file_limits(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="larger than 1048576 bytes"):
        Policy.load("/dev/zero")  # read in bounded pieces: neither hangs nor fills memory
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "# padding\n" * 120_000)
    with pytest.raises(PolicyError, match=rf"{big}: policy file is larger than"):
        Policy.load(big)
    with pytest.raises(PolicyError, match="is a directory"):
        Policy.load(tmp_path)


@pytest.mark.parametrize("libyaml", PARSERS)
def test_plain_values_that_look_like_other_types_stay_strings(libyaml: bool) -> None:
    p = load_policy_text("name: 2024-01-01\n", libyaml=libyaml)
    assert p.name == "2024-01-01"
    p = load_policy_text("name: '<<'\n", libyaml=libyaml)
    assert p.name == "<<"


@pytest.mark.parametrize("libyaml", PARSERS)
def test_aliases_within_budget_still_work(libyaml: bool) -> None:
    text = "resources: &r\n  pids_max: 64\nname: &n strict\nprograms:\n  allow: [*n, /bin/sh]\n"
    p = load_policy_text(text, libyaml=libyaml)
    assert p.resources.pids_max == 64 and p.name == "strict" and p.programs.allow == ("strict", "/bin/sh")


# -- property-based ---------------------------------------------------------------------------

_TOKENS = [
    *"[]{},:-?|>'\"&*!#%\n\t\\~=",
    ": ",
    "- ",
    "  ",
    "    ",
    "&a ",
    "&b ",
    "*a",
    "*b",
    "!!int ",
    "!!float ",
    "!!bool ",
    "!!str ",
    "!!null ",
    "!!map ",
    "!!seq ",
    "!!binary ",
    "!!python/object:os.system ",
    "!x ",
    "! ",
    "<<",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "%TAG !e! tag:e.com:\n",
    "!e!x ",
    "|-\n",
    ">+\n",
    "resources",
    "pids_max",
    "memory_max_bytes",
    "network",
    "mode",
    "allowlist",
    "name",
    "programs",
    "allow",
    "filesystem",
    "read_only_binds",
    "env",
    "passthrough",
    "store",
    "path",
    "detection",
    "none",
    "true",
    "maybe",
    "null",
    "x",
    "/",
    "*",
    "0",
    "-1",
    "0x1F",
    "0o17",
    "1_0",
    "1:2:3",
    "1e999",
    ".nan",
    "-.inf",
    "2024-01-01",
    "9" * 4400,
    "\x00",
    "\x85",
    "\ufeff",
    "é",
    "\u202e",
]


def _quietly(text: str, libyaml: bool) -> None:
    try:
        load_policy_text(text, "fuzz.yaml", libyaml=libyaml)
    except PolicyError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == "fuzz.yaml" and problem.message
            str(problem)


@FUZZ
@given(st.lists(st.sampled_from(_TOKENS), max_size=80), st.booleans())
def test_yaml_like_token_soup_never_raises_anything_but_policy_error(
    tokens: list[str], libyaml: bool
) -> None:
    _quietly("".join(tokens), libyaml)


@FUZZ
@given(st.text(max_size=400), st.booleans())
def test_arbitrary_text_is_a_policy_or_a_policy_error(text: str, libyaml: bool) -> None:
    _quietly(text, libyaml)


def _field_names(model: type[BaseModel], seen: set[str]) -> set[str]:
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        stack = [info.annotation]
        while stack:
            t = stack.pop()
            stack.extend(getattr(t, "__args__", ()))
            if isinstance(t, type) and issubclass(t, BaseModel) and t.__name__ not in seen:
                seen.add(t.__name__)
                names |= _field_names(t, seen)
    return names


_KEYS = sorted(_field_names(Policy, set()))
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["/", "/usr", "*", "*.com", "allowlist", "10.0.0.0/8", "example.com", "block", "high"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=6))
def test_the_loader_agrees_with_the_model_on_plain_data(data: dict[str, object]) -> None:
    """Plain data written as YAML loads exactly when the model accepts that data, to the same Policy."""
    text = yaml.safe_dump(data, allow_unicode=True)
    try:
        expected: Policy | None = Policy.model_validate(yaml.safe_load(text))
    except ValidationError:
        expected = None
    try:
        got: Policy | None = load_policy_text(text, "fuzz.yaml")
    except PolicyError:
        got = None
    assert got == expected
