"""Policy loading: the embedded default, and how fast hostile files are refused (medians of runs).

Baseline in the same run: ``yaml.safe_load`` (libyaml where built) + ``Policy.model_validate`` of
the same text, which keeps no line numbers and has no budgets. Hostile inputs have no baseline:
the plain loader hangs on the alias bomb and raises RecursionError on deep nesting.
Usage: .venv/bin/python benchmarks/bench_policy_load.py [RUNS]
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import yaml

from corral.errors import PolicyError
from corral.policy import Policy, load_policy_text

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "policy_corpus"


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        with contextlib.suppress(PolicyError):
            fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    default = resources.files("corral.data").joinpath("default.yaml").read_text("utf-8")
    loader = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
    ours = median_ms(lambda: load_policy_text(default), runs)
    base = median_ms(lambda: Policy.model_validate(yaml.load(default, Loader=loader)), runs)
    print(
        f"default policy: load_policy_text median {ours:.2f} ms; safe_load+validate (baseline) "
        f"{base:.2f} ms; ours/baseline = {ours / base:.2f}"
    )
    py = median_ms(lambda: load_policy_text(default, libyaml=False), runs)
    print(f"default policy, pure-Python parser fallback: median {py:.2f} ms")
    for name in (
        "alias_bomb.yaml",
        "alias_bomb_wide.yaml",
        "wide_flat.yaml",
        "deep_flow_seq.yaml",
        "deep_flow_map.yaml",
        "int_5000_digits.yaml",
    ):
        text = (CORPUS / name).read_text()
        ms = median_ms(lambda text=text, name=name: load_policy_text(text, name), runs)  # type: ignore[misc]
        print(f"hostile {name}: refused in median {ms:.1f} ms")


if __name__ == "__main__":
    main()
