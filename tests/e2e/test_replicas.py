"""Three ``bentoml serve`` replicas behind HAProxy on one S3 registry (a real moto_server process), with the
admin runner on the same registry, under steady load through the balancer (deploy/replicas.py;
``make replicas-demo`` runs the same by hand):

* promote a new version -> every replica serves it within the poll interval + 5 s, 0 failed requests;
* SIGTERM one replica and start it again (a rolling restart) -> 0 failed requests;
* kill -9 one replica -> the balancer marks it down and routes around it; what clients saw is reported;
* roll back -> every replica is back on the old version, 0 failed requests.

The timeline and the counts are printed (``pytest -s`` or ``-rA`` shows them; docs/deploying.md keeps a run).
"""

from __future__ import annotations

import pytest

from deploy import haproxy
from deploy.loadgen import CLIENTS, failures
from deploy.replicas import rehearse
from deploy.report import Report
from tests.s3server import S3Server

pytestmark = pytest.mark.e2e

if haproxy.binary() is None:
    pytest.skip("the replica test needs Debian's haproxy (make system-deps)", allow_module_level=True)

POLL_S = 1.0


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Report:
    """One rehearsal for the module, on an S3 registry: a bucket on the session's moto_server process."""
    workdir = tmp_path_factory.mktemp("replicas")
    registry = f"s3://{s3_server.new_bucket('imgserve-replicas')}/registry"
    result = rehearse(workdir, replicas=3, poll_interval_s=POLL_S, registry=registry, env=s3_server.env())
    print("\n" + result.render())
    (workdir / "timeline.txt").write_text(result.render())
    return result


def test_three_replicas_answered_through_the_balancer(report: Report) -> None:
    steady = report.in_phase("steady")
    assert {s.replica for s in steady} == {"r1", "r2", "r3"}
    assert all(s.ok and s.version == report.old for s in steady), failures(steady)


def test_promotion_reaches_every_replica_in_time_without_a_failed_request(report: Report) -> None:
    delays = report.swap_s["promote"]
    assert set(delays) == {"r1", "r2", "r3"}
    assert max(delays.values()) <= POLL_S + 5, delays
    assert not failures(report.in_phase("promote"))
    after = [s for s in report.samples if s.ok and report.all_swapped_at["promote"] < s.sent < report.kill["killed_at"]]
    assert after and {s.version for s in after} == {report.new}


def test_rolling_restart_fails_no_request(report: Report) -> None:
    during = report.in_phase("rolling restart")
    assert not failures(during), failures(during)
    assert any(s.replica == "r1" for s in during)  # it came back and took traffic again


def test_kill_9_is_routed_around(report: Report) -> None:
    during = report.in_phase("kill -9")
    kill = report.kill
    assert kill["replica"] == "r2" and float(kill["down_at"]) > float(kill["killed_at"])
    assert report.routed_to_dead() == 0
    answered_while_down = {s.replica for s in during if s.ok and kill["down_at"] < s.sent < kill["back_at"]}
    assert answered_while_down == {"r1", "r3"}
    lost = sum(failures(during).values())
    print(f"kill -9: {lost} of {len(during)} requests failed; down after "
          f"{float(kill['down_at']) - float(kill['killed_at']):.2f} s; balancer counters {report.lb_counters}")
    assert lost <= CLIENTS  # at most the requests in flight on it: one per client


def test_rollback_brings_every_replica_back(report: Report) -> None:
    assert set(report.swap_s["rollback"]) == {"r1", "r2", "r3"}
    assert max(report.swap_s["rollback"].values()) <= POLL_S + 5
    during = report.in_phase("rollback")
    assert not failures(during)
    tail = [s for s in during if s.sent > report.all_swapped_at["rollback"]]
    assert tail and {s.version for s in tail} == {report.old}
    assert report.problems() == []


def test_timeline_names_who_served_what(report: Report) -> None:
    text = report.render()
    for needle in ("r1", "r2", "r3", f"v{report.old}×", f"v{report.new}×", "balancer: r2 UP -> DOWN", "Counts by phase"):
        assert needle in text
