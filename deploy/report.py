"""What the replica rehearsal saw: events, phases, every request's outcome, and the verdict against issue 11's
bars (0 failed requests through a promotion, a rolling restart and a rollback; every replica on the new
version within the poll interval + 5 s; the balancer routing around a killed replica)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

from deploy.loadgen import Sample, failures

SWAP_SLACK_S = 5.0  # issue 11: every replica serves a promoted version within the poll interval + 5 s
QUIET_PHASES = ("steady", "promote", "rolling restart", "rollback")  # 0 failed requests expected


@dataclass(frozen=True)
class Event:
    t: float
    what: str


@dataclass
class Phase:
    name: str
    start: float
    end: float = math.inf


@dataclass
class Report:
    events: list[Event]
    phases: list[Phase]
    samples: list[Sample]
    swap_s: dict[str, dict[str, float]]  # "promote"/"rollback" -> replica -> seconds from the alias change to serving
    poll_interval_s: float
    old: int
    new: int
    replicas: list[str]
    kill: dict[str, float | str] = field(default_factory=dict)  # replica, killed_at, down_at, back_at
    lb_counters: dict[str, int] = field(default_factory=dict)
    l7_retries: bool = True  # whether the balancer replayed requests that got no response (deploy/haproxy.py)
    alias_lag_s: dict[str, float] = field(default_factory=dict)  # admin request -> alias changed in the registry
    rss_mib: dict[str, dict[str, float]] = field(default_factory=dict)  # replica -> main/worker resident MiB at the end
    all_swapped_at: dict[str, float] = field(default_factory=dict)  # when (load clock) the last replica swapped

    def in_phase(self, name: str) -> list[Sample]:
        phase = next(p for p in self.phases if p.name == name)
        return [s for s in self.samples if phase.start <= s.sent < phase.end]

    def problems(self) -> list[str]:
        out = []
        for name in QUIET_PHASES:
            if bad := failures(self.in_phase(name)):
                out.append(f"{name}: {sum(bad.values())} failed requests {dict(bad)}")
        bound = self.poll_interval_s + SWAP_SLACK_S
        for what, delays in self.swap_s.items():
            if slow := {r: s for r, s in delays.items() if s > bound}:
                out.append(f"{what}: replicas slower than {bound:.1f} s to swap: {slow}")
        if set(self.swap_s.get("rollback", {})) != set(self.replicas):
            out.append("not every replica was seen back on the old version")
        if idle := [r for r in self.replicas if not any(s.replica == r for s in self.in_phase("steady"))]:
            out.append(f"the balancer sent no steady-state request to {idle}")
        if self.kill and self.routed_to_dead():
            out.append(f"{self.routed_to_dead()} requests answered by {self.kill['replica']} while it was down")
        return out

    def routed_to_dead(self) -> int:
        """Answers from the killed replica between the balancer marking it DOWN and its restart (must be 0)."""
        k = self.kill
        return sum(1 for s in self.samples if s.replica == k["replica"] and k["down_at"] < s.sent < k["back_at"])

    def render(self, bucket_s: float = 2.0) -> str:
        lines = [f"Replica rehearsal: {len(self.replicas)} replicas behind HAProxy, alias poll {self.poll_interval_s:g} s, "
                 f"v{self.old} = old version, v{self.new} = new version, "
                 f"{'with' if self.l7_retries else 'WITHOUT'} the balancer's L7 retries", "",
                 "Timeline (requests by when they were sent; vN×k: k answers naming version N; ✗: failed):",
                 "   t (s)  " + "".join(f"{r:<14}" for r in self.replicas) + "failed"]
        lines += self.timeline(bucket_s)
        lines += ["", "Counts by phase:", f"  {'phase':<16}{'requests':>9}{'ok':>7}{'failed':>8}  by replica; failures by kind"]
        for p in self.phases:
            got = self.in_phase(p.name)
            per = Counter(s.replica for s in got if s.ok)
            bad = failures(got)
            lines.append(f"  {p.name:<16}{len(got):>9}{sum(s.ok for s in got):>7}{sum(bad.values()):>8}  "
                         + " ".join(f"{r}:{per[r]}" for r in self.replicas) + (f"; {dict(bad)}" if bad else ""))
        for what, delays in self.swap_s.items():
            lines.append(f"  {what}: the alias changed {self.alias_lag_s.get(what, 0):.2f} s after the admin request; "
                         f"each replica served the version {delays} s after that "
                         f"(bound: poll {self.poll_interval_s:g} s + {SWAP_SLACK_S:g} s)")
        if self.kill:
            lines.append(f"  kill -9 of {self.kill['replica']}: balancer marked it DOWN "
                         f"{float(self.kill['down_at']) - float(self.kill['killed_at']):.2f} s after the kill; "
                         f"{self.routed_to_dead()} requests reached it while down")
        if self.rss_mib:
            lines.append(f"  resident memory at the end, MiB (main process / largest worker): {self.rss_mib}")
        if self.lb_counters:
            lines.append(f"  balancer counters: {self.lb_counters} (wretr: retries, wredis: redispatched to another replica)")
        return "\n".join(lines)

    def timeline(self, bucket_s: float) -> list[str]:
        """One row per ``bucket_s`` of send time, with the events in between; runs of alike rows (same replicas
        on the same versions, nothing failed, no event) are merged into one row with their counts summed."""
        events = sorted(self.events, key=lambda e: e.t)
        end = max((s.sent for s in self.samples), default=0.0)
        out: list[str] = []
        row: list | None = None  # [lo, hi, cells, failed]
        for i in range(int(end // bucket_s) + 1):
            lo, hi = i * bucket_s, (i + 1) * bucket_s
            cells, failed = self._bucket(lo, hi)
            here = []
            while events and events[0].t < hi:
                here.append(events.pop(0))
            alike = row is not None and not (failed or row[3] or here) and _shape(row[2]) == _shape(cells)
            if alike:
                row[1] = hi
                for r, versions in cells.items():
                    row[2][r].update(versions)
                continue
            if row is not None:
                out.append(self._row(*row))
            out += [f"  {e.t:6.2f}  * {e.what}" for e in here]
            row = [lo, hi, cells, failed]
        if row is not None:
            out.append(self._row(*row))
        return out + [f"  {e.t:6.2f}  * {e.what}" for e in events]

    def _bucket(self, lo: float, hi: float) -> tuple[dict[str | None, Counter[int | None]], int]:
        cells: dict[str | None, Counter[int | None]] = defaultdict(Counter)
        failed = 0
        for s in self.samples:
            if lo <= s.sent < hi:
                if s.ok:
                    cells[s.replica][s.version] += 1
                else:
                    failed += 1
        return cells, failed

    def _row(self, lo: float, hi: float, cells: dict[str | None, Counter[int | None]], failed: int) -> str:
        row = "".join(f"{' '.join(f'v{v}×{n}' for v, n in sorted(cells[r].items())):<14}" for r in self.replicas)
        return f"  {f'{lo:.0f}-{hi:.0f}':>7} {row}{'✗' + str(failed) if failed else ''}".rstrip()

    def to_dict(self) -> dict:
        out = asdict(self)
        out["samples"] = len(self.samples)
        out["failed_samples"] = [asdict(s) for s in self.samples if not s.ok]
        out["counts"] = {p.name: {"requests": len(self.in_phase(p.name)), "failed": dict(failures(self.in_phase(p.name)))}
                         for p in self.phases}
        out["problems"] = self.problems()
        return out


def _shape(cells: dict[str | None, Counter[int | None]]) -> set[tuple[str | None, int | None]]:
    return {(r, v) for r, versions in cells.items() for v, n in versions.items() if n}
