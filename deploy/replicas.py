"""Several replicas behind a real load balancer, rehearsed on one machine: ``python -m deploy.replicas``
(``make replicas-demo``; the e2e test ``tests/e2e/test_replicas.py`` runs the same).

Three ``bentoml serve`` replicas on their own loopback ports share one registry; HAProxy (Debian's package, a
plain process with a generated config, deploy/haproxy.py) balances them and health-checks the readiness path
of deploy/k8s; the admin runner works on the same registry. Under a steady, bounded load through the
balancer it promotes a new version, restarts one replica with SIGTERM (a rolling restart), kills another with
SIGKILL, then rolls back, and prints who served which version when, and what the clients saw.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from deploy import haproxy
from deploy import manifests as mf
from deploy.loadgen import CLIENTS, RATE, Load
from deploy.report import Event, Phase, Report
from deploy.stack import (
    EXAMPLE_IMAGE,
    MODEL,
    Proc,
    admin_runner,
    base_env,
    environ,
    publish,
    replica,
    seed_registry,
)
from inference.registry import Registry


class LbWatch(threading.Thread):
    """Polls HAProxy's view of the servers every 100 ms and records each change as an event. A failed poll
    is kept (``error``) and named when a wait times out, with how the haproxy process (``proc``) stands."""

    def __init__(self, socket_path: Path, mark: Callable[[str], None]):
        super().__init__(name="lb-watch", daemon=True)
        self.socket_path, self.mark, self.states = socket_path, mark, {}
        self.halt = threading.Event()
        self.error = "none"
        self.proc: subprocess.Popen[bytes] | None = None

    def run(self) -> None:
        while not self.halt.wait(0.1):
            try:
                now = haproxy.server_states(self.socket_path)
            except Exception as e:  # noqa: BLE001 - a poll that failed is reported by wait_for, never fatal
                self.error = f"{type(e).__name__}: {e}"
                continue
            for name, status in sorted(now.items()):
                if self.states and self.states.get(name) != status:
                    self.mark(f"balancer: {name} {self.states.get(name)} -> {status}")
            self.states = now

    def wait_for(self, name: str, status: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.states.get(name) != status:
            if time.monotonic() > deadline:
                process = "not started" if self.proc is None else haproxy.exit_note(self.proc)
                raise TimeoutError(f"the balancer did not see {name} {status} within {timeout_s} s: {self.states} "
                                   f"(haproxy {process}; last failed poll: {self.error})")
            time.sleep(0.05)


class Rehearsal:
    def __init__(self, workdir: Path, replicas: int, poll_interval_s: float, clients: int, rate: float,
                 log: Callable[[str], None], l7_retries: bool = True, registry: str | None = None,
                 env: dict[str, str] | None = None):
        self.workdir, self.poll_interval_s, self.log, self.l7_retries = workdir, poll_interval_s, log, l7_retries
        self.token = secrets.token_hex(16)
        self.old, self.new = seed_registry(workdir / "models")
        env = base_env(self.token, env)
        self.models = registry or str(workdir / "models")
        if registry:
            publish(workdir / "models", registry, env)
            log(f"registry: {registry} (published with imgserve models copy)")
        self.lb_listener = haproxy.loopback_listener()  # held from now on: see haproxy.loopback_listener
        self.lb_port = int(self.lb_listener.getsockname()[1])
        self.ready_path = mf.probe_path(mf.container(mf.find(mf.load_all(), "Deployment", mf.SERVING)), "readinessProbe")
        self.replicas = [replica(f"r{i + 1}", workdir, self.models, env, poll_interval_s) for i in range(replicas)]
        for r in self.replicas:
            r.ready_path = self.ready_path
        self.admin = admin_runner(workdir, self.models, env, f"http://127.0.0.1:{self.lb_port}")
        self.load = Load(f"http://127.0.0.1:{self.lb_port}", EXAMPLE_IMAGE.read_bytes(), haproxy.REPLICA_HEADER,
                         clients=clients, rate_per_client=rate)
        self.report = Report([], [], [], {}, poll_interval_s, self.old, self.new, [r.name for r in self.replicas],
                             l7_retries=l7_retries)
        self.socket_path = workdir / "haproxy.sock"
        self.aws_env = {k: v for k, v in (env or {}).items() if k.startswith("AWS_")}
        self.registry: Registry | None = None  # the harness's own view of the alias (set up in run())
        self.watch = LbWatch(self.socket_path, self.mark)

    def mark(self, what: str, at: float | None = None) -> None:
        """Record an event now, or at ``at`` (a time.monotonic() reading)."""
        event = Event(round(self.load.now() if at is None else at - self.load.t0, 2), what)
        self.report.events.append(event)
        self.log(f"{event.t:8.2f}  {what}")

    def phase(self, name: str) -> None:
        if self.report.phases:
            self.report.phases[-1].end = self.load.now()
        self.report.phases.append(Phase(name, self.load.now()))
        self.mark(f"--- {name} ---")

    def run(self) -> Report:
        with contextlib.ExitStack() as stack:
            stack.callback(self.lb_listener.close)
            stack.enter_context(environ(self.aws_env))
            self.registry = Registry(self.models, cache_dir=self.workdir / "cache-harness")
            self.registry.aliases_tag(MODEL)  # the S3 client's set-up (~0.5 s) happens now, not while timing
            for proc in [*self.replicas, self.admin]:
                stack.callback(proc.stop)
                proc.start()
            for proc in [*self.replicas, self.admin]:
                self.log(f"{proc.name} ready on :{proc.port} after {proc.wait_ready():.1f} s")
            cfg = haproxy.config(f"fd@{self.lb_listener.fileno()}",
                                 [haproxy.Backend(r.name, r.port) for r in self.replicas],
                                 socket_path=self.socket_path, ready_path=self.ready_path, l7_retries=self.l7_retries)
            self.watch.proc = stack.enter_context(
                haproxy.running(cfg, self.workdir, socket_path=self.socket_path, listener=self.lb_listener))
            self.watch.start()
            stack.callback(self.watch.halt.set)
            for r in self.replicas:
                self.watch.wait_for(r.name, "UP")
            self.load.t0 = time.monotonic()
            self.load.start()
            stack.callback(self.load.stop)
            self.scenario()
            self.report.phases[-1].end = self.load.now()
            self.report.samples = self.load.stop()
            self.report.lb_counters = haproxy.backend_counters(self.socket_path)
            self.report.rss_mib = {r.name: r.rss_mib() for r in self.replicas}
        return self.report

    def scenario(self) -> None:
        first, second = self.replicas[0], self.replicas[1 % len(self.replicas)]
        self.phase("steady")
        time.sleep(3)
        self.phase("promote")
        self.report.swap_s["promote"] = self.change_alias("promote", {"version": self.new}, self.new)
        time.sleep(2)
        self.phase("rolling restart")
        self.restart(first, kill=False)
        time.sleep(2)
        self.phase("kill -9")
        self.restart(second, kill=True)
        time.sleep(2)
        self.phase("rollback")
        self.report.swap_s["rollback"] = self.change_alias("rollback", {}, self.old)
        time.sleep(2)

    def change_alias(self, verb: str, body: dict, version: int) -> dict[str, float]:
        """The admin runner's promote/rollback, while the registry's production alias and every replica's
        ``GET /model`` are polled. Returns the seconds from the alias change (what the replicas' polling can
        see) until each replica served ``version``; how long the change took after the request is recorded too."""
        tag = self.registry.aliases_tag(MODEL)
        sent = time.monotonic()
        self.mark(f"admin: {verb} {body}")
        with ThreadPoolExecutor(2) as pool:
            call = pool.submit(httpx.post, f"{self.admin.url}/models/{MODEL}/{verb}", timeout=60,
                               json={**body, "reason": "replica rehearsal"},
                               headers={"Authorization": f"Bearer {self.token}"})
            changed = pool.submit(self._alias_changes, tag)
            served = self.wait_all_on(version)
            resp, changed_at = call.result(), changed.result()
        resp.raise_for_status()
        took = resp.elapsed.total_seconds()
        self.mark(f"registry: production -> v{version} ({changed_at - sent:.2f} s after the request)", at=changed_at)
        self.mark(f"admin: {verb} answered after {took:.2f} s", at=sent + took)
        self.report.alias_lag_s[verb] = round(changed_at - sent, 2)
        self.report.all_swapped_at[verb] = round(max(served.values()) - self.load.t0, 2)
        for name, at in served.items():
            self.mark(f"{name} serves v{version} ({at - changed_at:.2f} s after the alias changed)", at=at)
        return {name: round(at - changed_at, 2) for name, at in served.items()}

    def _alias_changes(self, tag: str | None, timeout_s: float = 60.0) -> float:
        """When the production alias's tag (ETag, or the local file's) stops being ``tag``; polled every 50 ms."""
        deadline = time.monotonic() + timeout_s
        while self.registry.aliases_tag(MODEL) == tag:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the production alias did not change within {timeout_s} s")
            time.sleep(0.05)
        return time.monotonic()

    def wait_all_on(self, version: int) -> dict[str, float]:
        """When (time.monotonic()) each replica's GET /model first named ``version``: one poller per replica,
        each on its own kept-alive connection, every 50 ms (sequential fresh connections added up to a second
        per round on the loaded machine, which the figures then included)."""
        deadline = time.monotonic() + self.poll_interval_s + 60

        def first_on(r: Proc) -> float:
            with httpx.Client(base_url=r.url, timeout=5) as client:
                while time.monotonic() < deadline:
                    if _served_version(client) == version:
                        return time.monotonic()
                    time.sleep(0.05)
            raise TimeoutError(f"{r.name} did not serve v{version} within {self.poll_interval_s + 60} s")

        with ThreadPoolExecutor(len(self.replicas)) as pool:
            futures = {r.name: pool.submit(first_on, r) for r in self.replicas}
            return {name: f.result() for name, f in futures.items()}

    def restart(self, r: Proc, *, kill: bool) -> None:
        t0, killed_at = time.monotonic(), self.load.now()
        self.mark(f"{r.name}: {'SIGKILL (every process)' if kill else 'SIGTERM (main process)'}")
        r.kill9() if kill else r.terminate()
        code = r.wait_exit(60)
        self.mark(f"{r.name}: exited with {code} after {time.monotonic() - t0:.2f} s")
        if kill:
            self.watch.wait_for(r.name, "DOWN", timeout_s=10)
            down_at = self.load.now()
            time.sleep(3)  # the balancer routes around the dead replica meanwhile
            self.report.kill = {"replica": r.name, "killed_at": killed_at, "down_at": down_at, "back_at": self.load.now()}
        r.stop()
        r.start()
        self.mark(f"{r.name}: started again, ready after {r.wait_ready():.1f} s")
        self.watch.wait_for(r.name, "UP")


def _served_version(client: httpx.Client) -> int | None:
    try:
        return int(client.get("/model").json()["version"])
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def rehearse(workdir: Path, *, replicas: int = 3, poll_interval_s: float = 1.0, clients: int = CLIENTS,
             rate: float = RATE, l7_retries: bool = True, registry: str | None = None,
             env: dict[str, str] | None = None, log: Callable[[str], None] = print) -> Report:
    """Run the whole rehearsal in ``workdir`` (logs, caches, haproxy.cfg) and return what happened. The
    registry is a folder in ``workdir``, or ``registry`` (``s3://bucket/prefix``, reached with the AWS_*
    variables in ``env``), seeded by publishing that folder to it."""
    return Rehearsal(workdir, replicas, poll_interval_s, clients, rate, log, l7_retries, registry, env).run()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.replicas", description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=None, help="keep logs and the registry here (default: a temp dir)")
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--poll-interval", type=float, default=1.0, help="each replica's alias poll (IMGSERVE_POLL_INTERVAL_S)")
    p.add_argument("--clients", type=int, default=CLIENTS, help="concurrent clients through the balancer")
    p.add_argument("--rate", type=float, default=RATE, help="requests a second per client, at most")
    p.add_argument("--json", type=Path, default=None, help="write the report (events, phases, counts) here")
    p.add_argument("--no-l7-retries", action="store_true",
                   help="HAProxy's default retries only (connects), to see what clients get without replaying requests")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--registry", default=None,
                       help="s3://bucket/prefix to publish to and serve from (AWS_* variables from the environment)")
    where.add_argument("--moto", action="store_true",
                       help="start a local S3 server (moto_server, the tests' one) and serve from a bucket on it")
    args = p.parse_args(argv)
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="imgserve-replicas-")))
        workdir.mkdir(parents=True, exist_ok=True)
        registry, env = args.registry, None
        if args.moto:
            # a dev tool run from the checkout: it borrows the tests' S3 server (moto_server on a free port)
            from tests.s3server import running_s3_server

            server = stack.enter_context(running_s3_server(workdir / "moto.log"))
            registry, env = f"s3://{server.new_bucket('imgserve-replicas')}/registry", server.env()
        report = rehearse(workdir, replicas=args.replicas, poll_interval_s=args.poll_interval, clients=args.clients,
                          rate=args.rate, l7_retries=not args.no_l7_retries, registry=registry, env=env)
    print(report.render())
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=1))
    problems = report.problems()
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
