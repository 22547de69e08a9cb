"""Faults under load, long runs: PostgreSQL restarted, the server SIGKILLed.

``postgres-restart``: a private PostgreSQL cluster (initdb in a temp dir, run as
the ``postgres`` user, so the machine's shared cluster is never touched), two
``headway server start`` processes on it, client processes of several threads
each looping ``with concurrency("hammer"): ...`` through one server or the other.
The cluster is restarted (fast shutdown: every session of both servers is
terminated) ``--restarts`` times during the run. An observer outside headway (a
counter file under ``flock``) counts every moment more slots are in use than the
limit; every lease id granted is recorded, and none may be granted twice.

    python benchmarks/bench_reliability_faults.py postgres-restart --seconds 120 --restarts 10

``server-kill``: tests/stress/test_reliability_restart.py with more client processes
and several kills (SIGKILL, restart on the same port); prints what it checked.

    python benchmarks/bench_reliability_faults.py server-kill --clients 6 --kills 5

Prints acquisitions (before and after the restarts), violations (must be 0),
duplicate lease ids (must be 0), failed client processes (must be 0), and what
the store says at the end. Needs root (to run initdb as ``postgres``) and the
PostgreSQL server binaries. tests/stress/test_reliability_faults.py runs a short one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_over_admission import Observer  # noqa: E402

LIMIT_NAME = "hammer"


class PrivateCluster:
    """A PostgreSQL cluster of our own in a temp dir, run as the ``postgres`` user."""

    def __init__(self, port: int) -> None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not versions:
            raise SystemExit("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = versions[-1].parent
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="headway-pg-"))
        shutil.chown(self.dir, "postgres")
        self.data = self.dir / "data"
        self.options = (
            f"-p {port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=300"
        )

    def _pg(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=120
        )

    def _ctl(self, *args: str) -> None:
        self._pg(str(self.bin / "pg_ctl"), "-D", str(self.data), *args)

    def start(self) -> PrivateCluster:
        self._pg(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        self._ctl("-o", self.options, "-l", str(self.dir / "log"), "-w", "start")
        return self

    def restart(self) -> None:
        """Fast shutdown (open sessions are terminated, transactions rolled back), then start."""
        self._ctl("-o", self.options, "-l", str(self.dir / "log"), "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        try:
            self._ctl("-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


def client_process(args: argparse.Namespace) -> None:
    """One client process: ``--threads`` threads taking slots until ``--stop`` appears."""
    from headway.concurrency.sync import concurrency

    observer = Observer(Path(args.observer), args.limit)
    Path(args.ready, str(os.getpid())).touch()
    go, stop = Path(args.go), Path(args.stop)
    while not go.exists():
        time.sleep(0.005)
    grants: list[tuple[str, float]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def loop() -> None:
        try:
            while not stop.exists():
                with concurrency(LIMIT_NAME, occupy=1) as held:
                    observer.enter(1)
                    time.sleep(0.002)
                    observer.leave(1)
                with lock:
                    grants.append((str(held.lease_id), time.time()))
        except BaseException as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=loop) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Path(args.out).write_text(json.dumps({"grants": grants, "errors": errors}))
    if errors:
        raise SystemExit(f"client {os.getpid()} failed: {errors[0]}")


def postgres_restart(args: argparse.Namespace) -> dict[str, Any]:
    """Run the scenario; the figures as a dict."""
    from headway.client.http import HttpClient
    from headway.server.runner import ServerProcess, free_port
    from headway.settings import get_settings

    cluster = PrivateCluster(free_port()).start()
    work = Path(tempfile.mkdtemp(prefix="headway-faults-"))
    env = {
        **os.environ,
        "HEADWAY_HOME": str(work / "home"),
        "HEADWAY_DATABASE_URL": cluster.url,
        "HEADWAY_LOGGING_LEVEL": "WARNING",
    }
    for var in ("HEADWAY_API_URL", "HEADWAY_API_KEY"):
        env.pop(var, None)
    servers: list[Any] = []
    procs: list[subprocess.Popen[bytes]] = []
    restarted_at: list[float] = []
    try:
        servers = [ServerProcess(env, log_path=work / f"server{i}.log").start() for i in range(2)]
        admin = HttpClient(get_settings({"HEADWAY_API_URL": servers[0].url}), retry_seconds=60)
        admin.create_limit(LIMIT_NAME, args.limit)
        observer, ready, go, stop = work / "observer", work / "ready", work / "go", work / "stop"
        ready.mkdir()
        outs = []
        for i in range(args.processes):
            client_env = {k: v for k, v in env.items() if k != "HEADWAY_DATABASE_URL"}
            client_env["HEADWAY_API_URL"] = servers[i % 2].url
            out = work / f"client{i}.json"
            outs.append(out)
            command = [
                sys.executable, __file__, "client", "--observer", str(observer),
                "--ready", str(ready), "--go", str(go), "--stop", str(stop),
                "--limit", str(args.limit), "--threads", str(args.threads), "--out", str(out),
            ]  # fmt: skip
            log = open(work / f"client{i}.log", "wb")  # noqa: SIM115
            procs.append(subprocess.Popen(command, env=client_env, stdout=log, stderr=log))
            log.close()
        deadline = time.monotonic() + 120
        while len(list(ready.iterdir())) < args.processes:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit("client processes did not start")
            time.sleep(0.01)
        started = time.time()
        go.touch()
        pause = threading.Event()
        interval = args.seconds / (args.restarts + 1)
        for _ in range(args.restarts):
            pause.wait(interval)
            cluster.restart()
            restarted_at.append(time.time())
        pause.wait(interval)
        stop.touch()
        codes = [p.wait(timeout=120) for p in procs]
        elapsed = time.time() - started
        results = [json.loads(out.read_text()) for out in outs if out.exists()]
        seen = Observer.read(observer)
        limit = admin.read_limit(LIMIT_NAME)
        detail = admin.inspect_limit(LIMIT_NAME)
        admin.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for server in servers:
            server.stop()
        cluster.stop()
    grants = [g for r in results for g in r["grants"]]
    lease_ids = [g[0] for g in grants]
    last_restart = restarted_at[-1] if restarted_at else started
    errors = [e for r in results for e in r["errors"]]
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "processes": args.processes,
        "threads": args.threads,
        "limit": args.limit,
        "restarts": len(restarted_at),
        "seconds": round(elapsed, 1),
        "acquisitions": len(grants),
        "observer_entries": seen["entries"],
        "acquisitions_after_restart": sum(1 for g in grants if g[1] > last_restart),
        "violations": seen["violations"],
        "most_slots_in_use": seen["most"],
        "duplicate_lease_ids": len(lease_ids) - len(set(lease_ids)),
        "failed_processes": sum(1 for c in codes if c != 0),
        "errors": errors[:5],
        "active_slots_at_end": limit.active_slots,
        "holders_at_end": len(detail.holders),
        "waiters_at_end": len(detail.waiters),
        "grants_per_second": round(len(grants) / elapsed, 1),
    }


def server_kill(args: argparse.Namespace) -> int:
    """tests/stress/test_reliability_restart.py with more clients and kills; prints its checks."""
    test = HERE.parent / "tests" / "stress" / "test_reliability_restart.py"
    with tempfile.TemporaryDirectory() as work:
        report = Path(work) / "report.json"
        env = {
            **os.environ,
            "HEADWAY_RESTART_CLIENTS": str(args.clients),
            "HEADWAY_RESTART_KILLS": str(args.kills),
            "HEADWAY_RESTART_REPORT": str(report),
        }
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
             "timeout=3600", str(test)],
            env=env, capture_output=True, text=True, cwd=HERE.parent, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        if done.returncode != 0 or not report.exists():
            sys.stderr.write(done.stdout[-6000:])
            print(f"server-kill: FAILED after {seconds:.0f} s")
            return 1
        seen = json.loads(report.read_text())
    print(
        f"server SIGKILLed {seen['kills']} times under load ({seen['clients']} client processes"
        f" running flows through it), {seconds:.0f} s: every client went on by itself;"
        f" {seen['runs']} flow runs, {seen['states']} state changes, {seen['task_runs']} task"
        f" runs and {seen['log_lines']} log lines checked in the store, 0 lost;"
        " the limit intact, 0 slots left taken"
    )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="scenario", required=True)
    kill = sub.add_parser("server-kill", help="SIGKILL the server under load, restart it")
    kill.add_argument("--clients", type=int, default=6)
    kill.add_argument("--kills", type=int, default=5)
    pg = sub.add_parser("postgres-restart", help="restart PostgreSQL under load")
    pg.add_argument("--processes", type=int, default=8)
    pg.add_argument("--threads", type=int, default=4)
    pg.add_argument("--limit", type=int, default=3)
    pg.add_argument("--seconds", type=float, default=60)
    pg.add_argument("--restarts", type=int, default=5)
    pg.add_argument("--keep", action="store_true", help="keep the logs in the work dir")
    pg.add_argument("--json", action="store_true")
    client = sub.add_parser("client", help=argparse.SUPPRESS)
    for name in ("--observer", "--ready", "--go", "--stop", "--out"):
        client.add_argument(name)
    client.add_argument("--limit", type=int)
    client.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.scenario == "client":
        client_process(args)
        return
    if args.scenario == "server-kill":
        sys.exit(server_kill(args))
    result = postgres_restart(args)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"PostgreSQL restarted {result['restarts']} times under load: {result['processes']}"
        f" processes x {result['threads']} threads through 2 servers, limit {result['limit']},"
        f" {result['seconds']} s"
    )
    print(
        f"  acquisitions          {result['acquisitions']}"
        f" ({result['acquisitions_after_restart']} after the last restart)"
    )
    print(f"  violations            {result['violations']}  (must be 0)")
    print(f"  duplicate lease ids   {result['duplicate_lease_ids']}  (must be 0)")
    print(f"  failed processes      {result['failed_processes']}  (must be 0) {result['errors']}")
    print(f"  grants per second     {result['grants_per_second']}")
    print(
        f"  at the end: {result['active_slots_at_end']:g} active slots,"
        f" {result['holders_at_end']} holders, {result['waiters_at_end']} waiters"
    )


if __name__ == "__main__":
    main()
