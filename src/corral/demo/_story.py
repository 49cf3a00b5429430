"""What the demo saw happen, as it happened, and the incident's story told from it at the end.

``Chronicle`` is fed from the episode workers (calls), the watcher's thread
(attributions, quarantines, the halt) and the firewall (records); it is thread-safe.
``Chronicle.story`` turns it into the report's ``IncidentStory`` and ``figures`` into
the numbers the summary prints and ``summary.json`` keeps.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from corral.correlate import Attribution, is_violation
from corral.demo._agent import ACTS
from corral.demo._firewall import FirewallRecord
from corral.demo._loop import CallRecord, EpisodeOutcome
from corral.redteam import Seen
from corral.report import IncidentStory, StoryEvent, endpoint

LANE_LABELS = {
    "tunnel": "tunnel episode",
    "miner": "miner episode",
    "other": "other episodes",
    "firewall": "node firewall log",
    "watcher": "watcher: attributions",
    "response": "quarantine and halt",
}


@dataclass(frozen=True)
class LiveAttribution:
    made_s: float  # wall time the watcher made it
    latency_s: float
    attribution: Attribution
    quarantine: bool
    halted: bool


@dataclass
class Chronicle:
    run_id: str
    obey_halt: bool = True
    calls: list[CallRecord] = field(default_factory=list)
    attributions: list[LiveAttribution] = field(default_factory=list)
    quarantines: list[tuple[float, str, int]] = field(default_factory=list)  # time, episode, count
    halt: tuple[float, int] | None = None  # time, attributed violations in the window
    episodes: list[EpisodeOutcome] = field(default_factory=list)
    firewall: list[FirewallRecord] = field(default_factory=list)
    targets_seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- fed live ---------------------------------------------------------------------------

    def call(self, rec: CallRecord) -> None:
        with self.lock:
            self.calls.append(rec)

    def attributed(self, item: LiveAttribution) -> tuple[bool, bool]:
        """Record one attribution; (new quarantine, first halt) that it brought."""
        a = item.attribution
        with self.lock:
            self.attributions.append(item)
            new_q = item.quarantine and a.episode_id is not None
            if new_q:
                count = sum(1 for x in self.attributions if x.attribution.episode_id == a.episode_id)
                self.quarantines.append((item.made_s, a.episode_id or "", count))
            first_halt = item.halted and self.halt is None
            if first_halt:
                self.halt = (item.made_s, sum(1 for x in self.attributions if is_violation(x.attribution)))
            return new_q, first_halt

    # -- at the end ---------------------------------------------------------------------------

    def act_of(self, episode_id: str | None) -> str | None:
        for ep in self.episodes:
            if ep.episode_id == episode_id and ep.acts:
                return ep.acts[0]
        return None

    def act_starts(self) -> dict[str, CallRecord]:
        """Each act's starting call (the call the act's traffic belongs to), in ``ACTS`` order."""
        found = {c.act.name: c for c in self.calls if c.act is not None}
        return {a.name: found[a.name] for a in ACTS if a.name in found}

    def first_violation_s(self) -> float | None:
        times = [c.start_s for c in self.calls if not c.trusted and (c.result.blocked or c.result.alerts)]
        times += [r.time_s for r in self.firewall if r.action == "REJECT"]
        return min(times, default=None)

    def figures(self) -> dict[str, object]:
        """The run's key numbers (also written to summary.json)."""
        starts = self.act_starts()
        by_sandbox = {ep.sandbox_id: ep for ep in self.episodes if ep.sandbox_id}
        rejects = [r for r in self.firewall if r.action == "REJECT"]
        live_by_line = {x.attribution.log_line: x for x in self.attributions}
        acts: dict[str, dict[str, object]] = {}
        for name, start in starts.items():
            ep = next(e for e in self.episodes if e.episode_id == start.episode_id)
            dest = start.act.destination if start.act else None
            mine = [r for r in rejects if r.sandbox_id == ep.sandbox_id and (r.dst_ip, r.dst_port) == dest]
            to_call = [
                r
                for r in mine
                if (x := live_by_line.get(r.line)) is not None
                and x.attribution.tool_call_id == start.result.ctx.tool_call_id
            ]
            acts[name] = {
                "episode_id": ep.episode_id,
                "tool_call_id": start.result.ctx.tool_call_id,
                "turn": start.turn,
                "command": start.command,
                "call_blocked": start.result.blocked,
                "firewall_records": len(mine),
                "attributed_live_to_this_call": len(to_call),
                "quarantined": ep.quarantined,
                "ended_by": ep.ended_by,
            }
        first = self.first_violation_s()
        halt_s = self.halt[0] if self.halt else None
        after = [c for c in self.calls if halt_s is not None and c.start_s > halt_s and not c.trusted]
        after_trip = {
            "episodes": len({c.episode_id for c in after if c.turn == 0}),
            "calls": sum(1 for c in after if not c.refused),
            "blocked": sum(1 for c in after if c.result.blocked and not c.refused),
            "alerts": sum(len(c.result.alerts) for c in after if not c.refused),
        }
        violations = [x for x in self.attributions if is_violation(x.attribution)]
        return {
            "run_id": self.run_id,
            "acts": acts,
            "first_violation_time": first,
            "halt_time": halt_s,
            "seconds_first_violation_to_halt": (
                round(halt_s - first, 3) if halt_s is not None and first is not None else None
            ),
            "halt_obeyed": self.obey_halt,
            "after_trip": after_trip,  # what ran after the breaker tripped (only with --no-halt)
            "firewall_records": len(self.firewall),
            "firewall_rejects": len(rejects),
            "attributed_live": len(self.attributions),
            "violations_attributed_live": len(violations),
            "max_latency_s": round(max((x.latency_s for x in self.attributions), default=0.0), 3),
            "quarantined_episodes": [q[1] for q in self.quarantines],
            "episodes_run": sum(1 for e in self.episodes if not e.skipped),
            "episodes_never_started": sum(1 for e in self.episodes if e.skipped),
            "targets_reached": [f"{s.target} from {s.peer}: {s.detail}" for s in self.targets_seen],
            "rejects_by_sandbox": {
                (by_sandbox[r.sandbox_id].episode_id if r.sandbox_id in by_sandbox else "?"): sum(
                    1 for x in rejects if x.sandbox_id == r.sandbox_id
                )
                for r in rejects
            },
        }

    def story(self) -> IncidentStory:
        f = self.figures()
        acts = f["acts"]
        assert isinstance(acts, dict)
        lanes = [(a, f"{LANE_LABELS[a]} {acts[a]['episode_id']}") for a in ("tunnel", "miner") if a in acts]
        lanes += [(k, LANE_LABELS[k]) for k in ("other", "firewall", "watcher", "response")]
        events: list[StoryEvent] = []
        for c in self.calls:
            lane = self.act_of(c.episode_id) or "other"
            tcid = c.result.ctx.tool_call_id
            if c.act is not None:
                verdict = "blocked before it ran" if c.result.blocked else "ran"
                events.append(
                    StoryEvent(
                        c.start_s, "started", lane, f"{c.act.title}: {verdict}", c.episode_id, tcid, c.command
                    )
                )
            if c.refused:
                events.append(
                    StoryEvent(
                        c.start_s, "refused", "response", "call refused: run halted", c.episode_id, tcid
                    )
                )
            elif c.result.blocked:
                titles = (
                    "; ".join(dict.fromkeys(a.title for a in c.result.alerts)) or c.result.block_reason or ""
                )
                events.append(
                    StoryEvent(
                        c.start_s, "blocked", lane, f"blocked: {titles}", c.episode_id, tcid, c.command
                    )
                )
            elif c.result.alerts:
                titles = "; ".join(dict.fromkeys(a.title for a in c.result.alerts))
                who = " (grader's result)" if c.trusted else ""
                events.append(
                    StoryEvent(
                        c.start_s + c.result.duration_s,
                        "alert",
                        lane,
                        f"alert{who}: {titles}",
                        c.episode_id,
                        tcid,
                    )
                )
        for r in self.firewall:
            if r.action != "REJECT":
                continue
            ep_id = next((e.episode_id for e in self.episodes if e.sandbox_id == r.sandbox_id), None)
            title = (
                f"line {r.line}: {endpoint(r.src_ip, r.src_port)} -> {endpoint(r.dst_ip, r.dst_port)} REJECT"
            )
            events.append(StoryEvent(r.time_s, "firewall", "firewall", title, ep_id))
            act = self.act_of(ep_id)
            act = next((a.name for a in ACTS if act and a.destination == (r.dst_ip, r.dst_port)), act)
            if act is not None:  # the attempt itself, in its act's lane: refused by Corral's egress
                what = f"attempt to {endpoint(r.dst_ip, r.dst_port)} refused by the egress"
                events.append(StoryEvent(r.time_s, "denied", act, what, ep_id))
        for x in self.attributions:
            a = x.attribution
            if not is_violation(a):
                continue
            who = (
                f"{a.episode_id} turn {a.turn}" if a.tool_call_id else f"{a.candidate_count} candidate calls"
            )
            how = f"{a.method}, {a.confidence:.2f}; {x.latency_s:.1f}s after it was read"
            title = f"line {a.log_line} -> {who} ({how})"
            events.append(
                StoryEvent(x.made_s, "attributed", "watcher", title, a.episode_id, a.tool_call_id, a.evidence)
            )
        for t, ep_id, n in self.quarantines:
            events.append(
                StoryEvent(
                    t, "quarantine", "response", f"{ep_id} quarantined ({n} attributed records)", ep_id
                )
            )
        for ep in self.episodes:
            if ep.ended_by == "quarantine" and ep.closed_s is not None:
                lane = self.act_of(ep.episode_id) or "other"
                events.append(
                    StoryEvent(
                        ep.closed_s,
                        "closed",
                        lane,
                        "sandbox closed: what it left running was killed",
                        ep.episode_id,
                    )
                )
        if self.halt is not None:
            verb = "run halted" if self.obey_halt else "breaker tripped (ignored: --no-halt)"
            events.append(
                StoryEvent(self.halt[0], "halt", "response", f"{verb}: {self.halt[1]} attributed violations")
            )
        return IncidentStory(
            headline=self.headline(f),
            facts=self.facts(f),
            lanes=lanes,
            events=sorted(events, key=lambda e: e.time),
            notes=self.notes(f),
            run_id=self.run_id,
        )

    def headline(self, f: dict[str, object]) -> str:
        acts = f["acts"]
        assert isinstance(acts, dict)
        tried = " and ".join(
            f"a {'reverse SSH tunnel' if k == 'tunnel' else 'cryptominer'} ({v['episode_id']})"
            for k, v in acts.items()
        )
        reached = f["targets_reached"]
        outcome = (
            "Corral's egress refused every connection (the outside host and the pool saw nothing)"
            if not reached
            else f"SOMETHING REACHED A TARGET: {reached}"
        )
        sec = f["seconds_first_violation_to_halt"]
        if f["halt_time"] is None:
            end = "the circuit breaker did not trip"
        elif self.obey_halt:
            end = f"the circuit breaker halted the run {sec:.1f} s after the first violation"
        else:
            end = f"the circuit breaker tripped {sec:.1f} s after the first violation (--no-halt: ignored)"
        q = f["quarantined_episodes"]
        quarantined = f"{', '.join(q) if isinstance(q, list) and q else 'no episode'} quarantined"
        tried = tried[:1].upper() + tried[1:] if tried else "Nothing"
        return (
            f"{tried} tried; {outcome}; the node firewall's records "
            f"were attributed to their calls as they were written; {quarantined}; {end}."
        )

    def facts(self, f: dict[str, object]) -> list[tuple[str, object]]:
        sec = f["seconds_first_violation_to_halt"]
        return [
            (
                "first violation to halt" if self.obey_halt else "first violation to breaker trip",
                f"{sec:.1f} s" if isinstance(sec, float) else "no trip",
            ),
            ("firewall REJECT records", f["firewall_rejects"]),
            ("violations attributed live", f["violations_attributed_live"]),
            ("slowest attribution", f"{f['max_latency_s']:.1f} s"),
            ("episodes quarantined", len(f["quarantined_episodes"])),  # type: ignore[arg-type]
            ("episodes never started", f["episodes_never_started"]),
            ("connections that reached a target", len(f["targets_reached"])),  # type: ignore[arg-type]
        ]

    def notes(self, f: dict[str, object]) -> list[str]:
        out = [
            "Every address the agent dialled lives in a network namespace the demo created (the outside "
            "host runs a real OpenSSH server, the pool a stratum server); the demo itself runs in a private "
            "network namespace with no uplink.",
            "The miner is a stand-in (hashing on one core, retrying its pool over stratum) that the demo "
            "placed in the miner episode's workspace as .cache/bench.py, as if the agent had fetched it.",
            "The node firewall log is simulated: one REJECT record for each connection Corral's egress "
            "refused, written when Corral saw it, as VPC flow logs of pods with their own addresses show it.",
        ]
        if not self.obey_halt:
            out.append(
                "--no-halt: the loop kept going after the breaker tripped, to show what the run would do."
            )
        return out
