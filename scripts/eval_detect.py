#!/usr/bin/env python3
"""Recall per category and false positives of the built-in rules on a labelled command set.

    .venv/bin/python scripts/eval_detect.py [tests/data/detect/eval.jsonl] [--policy P] [--show-misses]

Each JSON line has ``command``, ``label`` (malicious or benign) and ``category``.

``sealed.jsonl`` is built from public sources the rules were never tuned on; its first-pass
figures (measured once, before any rule change) are in ``sealed.first_pass.json`` and printed
beside today's. The other sets are regression guards: rules were tuned on them. A malicious line
counts as detected when it raises any alert; a benign line is a false positive when it raises any
alert (``alerting``) or is blocked (``blocking``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from corral.detect import Detector
from corral.events import TraceContext
from corral.policy import Policy

DEFAULT = Path(__file__).resolve().parent.parent / "tests" / "data" / "detect" / "eval.jsonl"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--policy", type=Path)
    ap.add_argument("--show-misses", action="store_true", help="print missed attacks and false positives")
    args = ap.parse_args()
    policy = Policy.load(args.policy) if args.policy else Policy.default()
    det = Detector.from_policy(policy)
    titles = {r.id: r.title for r in det.rules}
    ctx = TraceContext()
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    wrong_category: dict[str, int] = defaultdict(int)
    fp_alert = fp_block = benign = 0
    misses: list[str] = []
    fps: list[str] = []
    for line in args.file.read_text().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        r = det.inspect_command(item["command"], ctx=ctx)
        if item["label"] == "malicious":
            cat = item["category"]
            hits[cat][1] += 1
            if r.alerts:
                hits[cat][0] += 1
                if cat not in {a.category for a in r.alerts}:
                    wrong_category[cat] += 1
            else:
                misses.append(f"  [{cat}] {item['command']!r}")
        else:
            benign += 1
            if r.alerts:
                fp_alert += 1
                fp_block += r.verdict == "block"
                fps.append(
                    f"  [{r.verdict}] {item['command']!r} <- {', '.join(titles.get(x, x) for x in r.rules)}"
                )
    total_hit = sum(h for h, _ in hits.values())
    total = sum(n for _, n in hits.values())
    print(f"{'category':<22}{'recall':>8}{'detected':>10}{'other-cat':>11}")
    for cat in sorted(hits):
        h, n = hits[cat]
        print(f"{cat:<22}{h / n:>8.1%}{f'{h}/{n}':>10}{wrong_category[cat]:>11}")
    print(f"{'ALL':<22}{total_hit / max(total, 1):>8.1%}{f'{total_hit}/{total}':>10}")
    print(
        f"benign: {benign}, false positives alerting: {fp_alert} ({fp_alert / max(benign, 1):.1%}), "
        f"blocking: {fp_block} ({fp_block / max(benign, 1):.1%})"
    )
    first = args.file.with_name(args.file.stem + ".first_pass.json")
    if first.exists():
        fp = json.loads(first.read_text())
        print(
            f"FIRST PASS (commit {fp['commit'][:10]}, before tuning): recall {fp['recall']:.1%}, "
            f"benign alerting {fp['benign_alerting']:.1%}, blocking {fp['benign_blocking']:.1%}; "
            "only the first pass measures generalisation (its misses have been seen since)"
        )
        for key in sorted(k for k in fp if k.startswith("benign_extension")):
            ext = fp[key]
            print(
                f"FIRST PASS of the {ext['benign']} benign lines added later (commit {ext['commit'][:10]}): "
                f"alerting {ext['benign_alerting']:.1%}, blocking {ext['benign_blocking']:.1%}; "
                f"all {ext['all_benign']} benign then: alerting {ext['all_benign_alerting']:.1%}, "
                f"blocking {ext['all_benign_blocking']:.1%}"
            )
    else:
        print("(tuned set: a regression guard, not a measurement of generalisation)")
    if args.show_misses:
        print("missed:", *misses, sep="\n")
        print("false positives:", *fps, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
