"""The scripted agent: the incident's acts at fixed episodes, and only the demo's own addresses dialled."""

from __future__ import annotations

import ipaddress
import random
import re

import pytest

from corral.demo import ACTS, MISBEHAVIOURS, act_episodes
from corral.demo._agent import episode_plan, miner_standin
from corral.demo._range import INTERNAL_IP, METADATA_IP, OUTSIDE_HOST_IP, POOL_IP, UPLOAD_IP

OWNED = {OUTSIDE_HOST_IP, POOL_IP, UPLOAD_IP, METADATA_IP, INTERNAL_IP, "127.0.0.1"}
_IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")


@pytest.mark.parametrize(
    ("episodes", "expected"),
    [
        (1, {0: ("tunnel", "miner")}),
        (2, {0: ("tunnel",), 1: ("miner",)}),
        (3, {1: ("tunnel",), 2: ("miner",)}),
        (6, {4: ("tunnel",), 5: ("miner",)}),
        (64, {4: ("tunnel",), 5: ("miner",)}),
    ],
)
def test_acts_are_at_fixed_episodes(episodes: int, expected: dict[int, tuple[str, ...]]) -> None:
    got = {i: tuple(a.name for a in acts) for i, acts in act_episodes(episodes).items()}
    assert got == expected


def test_an_act_episode_starts_the_act_and_keeps_its_sandbox_busy() -> None:
    for acts in act_episodes(1).values():
        plan = episode_plan(random.Random(1), 1.0, acts)
        starts = [s for s in plan if s.act is not None]
        assert [s.act.name for s in starts if s.act] == ["tunnel", "miner"]
        assert not any(s.misbehaviour for s in plan), "no random misbehaviour in an act's episode"
        assert len(plan) > 10  # the agent keeps checking on what it started


def test_other_episodes_misbehave_at_the_given_rate_and_reproducibly() -> None:
    plans = [episode_plan(random.Random(i), 0.5) for i in range(200)]
    bad = sum(any(s.misbehaviour for s in p) for p in plans)
    assert 60 < bad < 140
    assert [s.command for s in episode_plan(random.Random(3), 0.5)] == [
        s.command for s in episode_plan(random.Random(3), 0.5)
    ]


def test_every_address_the_agent_names_is_one_the_demo_owns() -> None:
    texts = [m.command for m in MISBEHAVIOURS]
    texts += [t for a in ACTS for t in (a.start, *a.follow_up, *a.staged.values())]
    seen = {ip for t in texts for ip in _IPV4.findall(t)}
    assert seen and seen <= OWNED, seen - OWNED
    for ip in OWNED - {"127.0.0.1"}:  # none of them is a real outside address
        addr = ipaddress.ip_address(ip)
        assert addr.is_private or addr in ipaddress.ip_network("198.18.0.0/15") or addr.is_link_local


def test_the_miner_is_a_stand_in() -> None:
    src = miner_standin()
    assert "mining.subscribe" in src and "hashlib.sha256" in src
    assert not _IPV4.findall(src), "the pool comes from its config, written by the agent's call"
    assert {a.name: a.destination for a in ACTS} == {
        "tunnel": (OUTSIDE_HOST_IP, 22),
        "miner": (POOL_IP, 3333),
    }
