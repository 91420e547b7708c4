"""The replica rehearsal's pieces that need no server: its verdict and timeline (deploy/report.py) on recorded
outcomes, and the HAProxy configs it generates, checked by Debian's haproxy itself (``haproxy -c``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploy import haproxy
from deploy.loadgen import Sample
from deploy.report import Event, Phase, Report

PHASES = ["steady", "promote", "rolling restart", "kill -9", "rollback"]


def recorded(bad: dict[float, Sample] | None = None) -> Report:
    """25 s of one request every 0.1 s, round-robin over r1..r3, r2 down from 15.5 to 19 s; v1, then v2 from
    6 s, then v1 again from 21 s. ``bad`` replaces the samples sent at those times."""
    samples = []
    for i in range(250):
        t = round(i * 0.1, 1)
        replica = f"r{i % 3 + 1}"
        if replica == "r2" and 15.5 < t < 19:
            replica = "r1"
        version = 2 if 6 <= t < 21 else 1
        samples.append((bad or {}).get(t, Sample(t, t + 0.01, 200, version, replica)))
    phases = [Phase(name, 5.0 * i, 5.0 * (i + 1)) for i, name in enumerate(PHASES)]
    events = [Event(5.0, "admin: promote"), Event(15.2, "r2: SIGKILL"), Event(15.5, "balancer: r2 UP -> DOWN")]
    return Report(events, phases, samples, {"promote": {"r1": 0.4, "r2": 0.9, "r3": 1.3},
                                            "rollback": {"r1": 0.5, "r2": 0.8, "r3": 1.1}},
                  1.0, 1, 2, ["r1", "r2", "r3"], kill={"replica": "r2", "killed_at": 15.2, "down_at": 15.5, "back_at": 19.0})


def test_a_clean_run_has_no_problems_and_a_readable_timeline() -> None:
    report = recorded()
    assert report.problems() == []
    text = report.render()
    assert "balancer: r2 UP -> DOWN" in text and "v1×" in text and "v2×" in text
    assert "0 requests reached it while down" in text
    counts = [line for line in text.splitlines() if line.strip().startswith("kill -9 ")]
    assert counts and counts[0].split()[2:5] == ["50", "50", "0"]


def test_failures_slow_swaps_and_traffic_to_a_dead_replica_are_problems() -> None:
    failed = Sample(12.0, 12.1, 0, error="RemoteProtocolError: Server disconnected")
    routed = Sample(17.0, 17.01, 200, 2, "r2")
    report = recorded({12.0: failed, 17.0: routed})
    report.swap_s["promote"]["r3"] = 6.5  # bound: poll 1 s + 5 s
    problems = "\n".join(report.problems())
    assert "rolling restart: 1 failed requests {'RemoteProtocolError': 1}" in problems
    assert "promote: replicas slower than 6.0 s to swap: {'r3': 6.5}" in problems
    assert "1 requests answered by r2 while it was down" in problems
    assert "✗1" in report.render()


def test_kill_phase_failures_are_counted_not_judged() -> None:
    report = recorded({16.0: Sample(16.0, 16.2, 503, replica="r1", error="no server")})
    assert report.problems() == []  # what clients see during a kill -9 is reported, not a bar
    assert "{'503': 1}" in report.render()


@pytest.mark.skipif(haproxy.binary() is None, reason="needs Debian's haproxy (make system-deps)")
@pytest.mark.parametrize("l7_retries", [True, False])
def test_generated_config_is_valid_haproxy(tmp_path: Path, l7_retries: bool) -> None:
    backends = [haproxy.Backend(f"r{i}", 40000 + i) for i in range(3)]
    text = haproxy.config("127.0.0.1:41000", backends, socket_path=tmp_path / "s.sock", ready_path="/readyz", l7_retries=l7_retries)
    (tmp_path / "haproxy.cfg").write_text(text)
    check = subprocess.run([haproxy.binary(), "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert ("option http-buffer-request" in text) is l7_retries
    assert text.count("server r") == 3 and "httpchk GET /readyz" in text
