"""Slots under contention: N callers on a limit of 4, each holding 2 ms, against a Redis semaphore.

Every caller loops ``with concurrency("contended", timeout_seconds=None): hold``
(the Redis yardstick: ``BLPOP`` a token, hold, ``RPUSH`` it back) for a fixed
time, in P processes x T threads (default 8 x 3 = 24 callers). Setups, in one run:

- ``embedded``: embedded SQLite, every process on the same HEADWAY_HOME;
- ``server``: one ``headway server`` on SQLite, every caller through HttpClient;
- ``postgres``: ``--servers`` (default 6) ``headway server``s on one fresh
  PostgreSQL database, each client process through its own server (process i
  through server i mod N); the PostgreSQL sessions of each server process are
  sampled from ``pg_stat_activity`` during the run (the most seen at once);
- ``redis``: a token semaphore on the local Redis (127.0.0.1:6379).

The observer is outside headway: each caller logs, per grant, when it asked,
when it got the slot and when it gave it back (wall clock, shared by the
processes of this machine). From those intervals the script computes grants/s,
the wait p50/p99, *utilization while waiting* (the average share of the limit
held while at least one caller was waiting), the peak held at once and the
violations (moments with more than the limit held). A caller's logged hold lies
inside its lease, so a violation seen here is a real over-admission, and
utilization is, if anything, under-stated.

The floor: a bare SQLite write transaction (``BEGIN IMMEDIATE``, one UPDATE,
``COMMIT``, WAL, synchronous=NORMAL, as the store runs it), a PostgreSQL round
trip (``SELECT 1``) and commit (a one-row UPDATE, its own transaction: a
contended grant holds the limit's row lock through two such commits) and a
Redis round trip, each timed alone; each setup's
grant interval is printed as a multiple of the SQLite commit, and its grants/s
as a ratio of Redis's.

Usage: python benchmarks/bench_contention.py [--processes 8] [--threads 3]
       [--limit 4] [--hold-ms 2] [--seconds 10] [--servers 6]
       [--setups embedded,server,postgres,redis] [--count] [--kill-one] [--no-order]

``--kill-one`` (the PostgreSQL setup): every client process names all the
servers in ``HEADWAY_API_URL``, its own first; halfway through the run the
first server is killed (SIGKILL). Printed: how long after the kill its client
processes were granted again (through another server), the grants/s before
and after, and the slots the limit counted as held at the end of the run
against those its callers held (none: a slot lost with the server would stay
held until its lease expired).

FIFO order is read from the database (``bench_queue_order.py``): while each
headway setup runs, its ``waiters`` rows for the limit are read every 5 ms,
and a request that left the queue while one ahead of it stayed is counted as
an out-of-order grant (``--no-order`` skips these reads).

``--count`` makes the PostgreSQL setup's servers count their round trips and
time their slot operations (``bench_counts.py``): it prints, per grant, the
calls and round trips of each operation, the milliseconds each call spent in
the server, and the CPU of the servers and of their PostgreSQL sessions.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_counts import Counts, counting_env, report
from bench_queue_order import QueueOrder, postgres_watcher, sqlite_watcher
from bench_server_setup import ADMIN_URL, percentile, store

LIMIT_NAME = "contended"
REDIS_KEY = "headway-bench-contention"
#: (asked, granted, released) per grant, wall-clock seconds.
Interval = tuple[float, float, float]


def _headway_caller(
    hold: float, stop_at: float, log: list[Interval], errors: list[str], start: threading.Event
) -> None:
    from headway.concurrency.sync import concurrency

    start.wait()
    while time.time() < stop_at:
        asked = time.time()
        try:
            with concurrency(LIMIT_NAME, occupy=1, timeout_seconds=None):
                got = time.time()
                time.sleep(hold)
                done = time.time()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        log.append((asked, got, done))


def _redis_caller(
    hold: float, stop_at: float, log: list[Interval], errors: list[str], start: threading.Event
) -> None:
    import redis

    conn = redis.Redis(host="127.0.0.1", port=6379)
    start.wait()
    while time.time() < stop_at:
        asked = time.time()
        try:
            token = conn.blpop([REDIS_KEY], timeout=0)
            got = time.time()
            time.sleep(hold)
            done = time.time()
            assert token is not None
            conn.rpush(REDIS_KEY, token[1])
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        log.append((asked, got, done))


def _process(
    index: int,
    setup: str,
    env: dict[str, str],
    threads: int,
    hold: float,
    seconds: float,
    go: Any,
    out: Any,
) -> None:
    os.environ.update(env)
    caller = _redis_caller if setup == "redis" else _headway_caller
    if setup != "redis":
        from headway.client.base import get_client

        get_client().read_limit(LIMIT_NAME)  # connected (and the server reached) before the start
    logs: list[list[Interval]] = [[] for _ in range(threads)]
    errors: list[str] = []
    start = threading.Event()
    go.wait()
    stop_at = time.time() + seconds
    workers = [
        threading.Thread(target=caller, args=(hold, stop_at, logs[i], errors, start))
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    start.set()
    for w in workers:
        w.join()
    out.put((index, [i for log in logs for i in log], errors))


def analyse(intervals: list[Interval], limit: int) -> dict[str, float]:
    """Utilization while waiting, peak held and violations, from the callers' intervals."""
    # +1 hold at ``got``, -1 at ``released``; +1 waiting at ``asked``, -1 at ``got``.
    # At equal times the ends go first: a slot handed on at one instant is not two.
    events: list[tuple[float, int, int, int]] = []
    for asked, got, done in intervals:
        events.append((asked, 1, 0, 1))
        events.append((got, 0, 0, -1))
        events.append((got, 1, 1, 0))
        events.append((done, 0, -1, 0))
    events.sort(key=lambda e: (e[0], e[1]))
    held = waiting = 0
    peak = 0
    violations = 0
    busy_while_waiting = 0.0
    time_waiting = 0.0
    last = events[0][0] if events else 0.0
    for at, _, d_held, d_waiting in events:
        span = at - last
        if waiting > 0 and span > 0:
            time_waiting += span
            busy_while_waiting += span * min(held, limit)
        last = at
        before = held
        held += d_held
        waiting += d_waiting
        if held > limit and before <= limit:
            violations += 1
        peak = max(peak, held)
    return {
        "utilization": busy_while_waiting / (time_waiting * limit) if time_waiting else 1.0,
        "peak": float(peak),
        "violations": float(violations),
    }


def _urls(servers: list[str], i: int, every: bool) -> str:
    """Process ``i``'s ``HEADWAY_API_URL``: its own server, then (``every``) the others."""
    own = i % len(servers)
    if not every:
        return servers[own]
    return ",".join(servers[own:] + servers[:own])


def run_setup(
    setup: str,
    args: argparse.Namespace,
    env: dict[str, str],
    servers: list[str] | None = None,
    kill: Any = None,
) -> dict[str, Any]:
    """One setup's run; ``kill`` (called halfway, returning the time) kills a server."""
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    envs = [
        env if not servers else {**env, "HEADWAY_API_URL": _urls(servers, i, kill is not None)}
        for i in range(args.processes)
    ]
    procs = [
        ctx.Process(
            target=_process,
            args=(i, setup, envs[i], args.threads, args.hold_ms / 1000, args.seconds, go, out),
        )
        for i in range(args.processes)
    ]
    for p in procs:
        p.start()
    time.sleep(2.0)  # every process imported and connected
    killed: list[float] = []
    if kill is not None:
        timer = threading.Timer(args.seconds / 2, lambda: killed.append(kill()))
        timer.start()
    go.set()
    started = time.time()
    results = [out.get(timeout=args.seconds + 180) for _ in procs]
    for p in procs:
        p.join()
    intervals = [i for r in results for i in r[1]]
    errors = [e for r in results for e in r[2]]
    waits = [got - asked for asked, got, _ in intervals]
    figures: dict[str, Any] = {
        "setup": setup,
        "grants_per_s": len(intervals) / args.seconds,
        "p50_ms": percentile(waits, 0.5) * 1000 if waits else 0.0,
        "p99_ms": percentile(waits, 0.99) * 1000 if waits else 0.0,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        **analyse(intervals, args.limit),
    }
    if killed and servers:
        at = killed[0]
        # The processes whose own (first-named) server was the one killed.
        # The processes whose own (first-named) server was the one killed: how
        # long until the last of them was granted again.
        firsts = [
            min((got for _, got, _ in r[1] if got >= at), default=None)
            for r in results
            if r[0] % len(servers) == 0
        ]
        figures["kill"] = {
            "at": at - started,
            "resumed": None if None in firsts else max(f - at for f in firsts if f is not None),
            "before": sum(1 for _, got, _ in intervals if got < at) / (at - started),
            "after": sum(1 for _, got, _ in intervals if got >= at) / (started + args.seconds - at),
        }
    return figures


def sqlite_commit_seconds(rounds: int = 2000) -> float:
    """One bare write transaction on a WAL SQLite file, synchronous=NORMAL."""
    with tempfile.TemporaryDirectory(prefix="headway-bench-floor-") as home:
        conn = sqlite3.connect(os.path.join(home, "floor.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("CREATE TABLE t (n INTEGER NOT NULL)")
        conn.execute("INSERT INTO t VALUES (0)")
        started = time.perf_counter()
        for _ in range(rounds):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE t SET n = n + 1")
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    return elapsed / rounds


def postgres_round_trip_seconds(url: str, rounds: int = 2000) -> float:
    """One ``SELECT 1`` answered by PostgreSQL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        for _ in range(rounds):
            conn.execute("SELECT 1").fetchone()
        return (time.perf_counter() - started) / rounds


def postgres_commit_seconds(url: str, rounds: int = 300) -> float:
    """One committed one-row UPDATE: a round trip and the commit's wait for the disk.

    Every contended slot operation holds the limit's row lock until its commit
    is on disk, and a grant takes two of them (the request queued, the slot
    released and handed on): this is the floor of their interval.
    """
    import psycopg

    table = f"headway_bench_floor_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, n bigint)")
        try:
            conn.execute(f"INSERT INTO {table} VALUES (1, 0)")
            started = time.perf_counter()
            for _ in range(rounds):
                conn.execute(f"UPDATE {table} SET n = n + 1 WHERE id = 1")
            return (time.perf_counter() - started) / rounds
        finally:
            conn.execute(f"DROP TABLE {table}")


class SessionGauge:
    """Samples ``pg_stat_activity``: the most sessions each headway process held at once."""

    def __init__(self, url: str, database: str) -> None:
        self.url, self.database = url, database
        self.most: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SessionGauge:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(0.05):
                rows = conn.execute(
                    "SELECT application_name, COUNT(*) FROM pg_stat_activity"
                    " WHERE datname = %s AND application_name LIKE 'headway%%'"
                    " GROUP BY application_name",
                    (self.database,),
                ).fetchall()
                for name, count in rows:
                    self.most[name] = max(self.most.get(name, 0), int(count))


@contextlib.contextmanager
def _watching(order: QueueOrder, args: argparse.Namespace) -> Iterator[None]:
    """The queue read during the run, unless ``--no-order``."""
    if args.no_order:
        yield
        return
    with order:
        yield


def redis_round_trip_seconds(rounds: int = 2000) -> float:
    """One Redis PING answered."""
    import redis

    conn = redis.Redis(host="127.0.0.1", port=6379)
    started = time.perf_counter()
    for _ in range(rounds):
        conn.ping()
    return (time.perf_counter() - started) / rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--hold-ms", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--servers", type=int, default=6)
    parser.add_argument("--setups", default="embedded,server,postgres,redis")
    parser.add_argument(
        "--count",
        action="store_true",
        help="postgres: count round trips, time and CPU per grant inside the servers",
    )
    parser.add_argument(
        "--kill-one",
        action="store_true",
        help="postgres: kill the first server halfway; its clients go on through the others",
    )
    parser.add_argument(
        "--no-order",
        action="store_true",
        help="do not read the queue during the run to count out-of-order grants",
    )
    args = parser.parse_args()
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    callers = args.processes * args.threads
    print(
        f"{callers} callers ({args.processes} processes x {args.threads} threads), limit"
        f" {args.limit}, hold {args.hold_ms:g} ms, {args.seconds:g} s per setup;"
        f" load average {os.getloadavg()[0]:.2f} at start"
    )
    commit = sqlite_commit_seconds()
    ping = redis_round_trip_seconds() if "redis" in setups else float("nan")
    pg = postgres_round_trip_seconds(ADMIN_URL) if "postgres" in setups else float("nan")
    pg_commit = postgres_commit_seconds(ADMIN_URL) if "postgres" in setups else float("nan")
    print(
        f"floor: bare SQLite commit {commit * 1e6:.0f} us; PostgreSQL round trip"
        f" {pg * 1e6:.0f} us, commit {pg_commit * 1e6:.0f} us; Redis round trip"
        f" {ping * 1e6:.0f} us"
    )
    ideal = args.limit / (args.hold_ms / 1000)
    rows: list[dict[str, Any]] = []
    for setup in setups:
        if setup == "redis":
            import redis

            conn = redis.Redis(host="127.0.0.1", port=6379)
            conn.delete(REDIS_KEY)
            conn.rpush(REDIS_KEY, *[f"token-{i}" for i in range(args.limit)])
            rows.append(run_setup("redis", args, dict(os.environ)))
            conn.delete(REDIS_KEY)
            continue
        if setup not in ("embedded", "server", "postgres"):
            raise SystemExit(f"unknown setup {setup!r}: embedded, server, postgres or redis")
        with store("postgres" if setup == "postgres" else "sqlite") as env:
            from headway.server.runner import ServerProcess

            count = {"embedded": 0, "server": 1, "postgres": args.servers}[setup]
            counting = tempfile.mkdtemp(prefix="headway-bench-counts-") if args.count else ""
            server_env = counting_env(env, counting) if counting and setup == "postgres" else env
            servers = [ServerProcess(server_env) for _ in range(count)]
            try:
                for server in servers:
                    server.start()
                from headway.client.base import _make_client
                from headway.settings import get_settings

                admin_env = {**env, "HEADWAY_API_URL": servers[0].url} if servers else env
                admin = _make_client(get_settings(admin_env))
                admin.create_limit(LIMIT_NAME, args.limit)
                urls = [s.url for s in servers]
                if setup == "postgres":
                    database = env["HEADWAY_DATABASE_URL"].rsplit("/", 1)[1]
                    pids = [s.pid for s in servers]
                    before = Counts.take(counting, ADMIN_URL, pids) if counting else None
                    kill = None
                    if args.kill_one:

                        def kill(victim: Any = servers[0]) -> float:
                            os.kill(victim.pid, signal.SIGKILL)
                            return time.time()

                    db_url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{database}"
                    order = postgres_watcher(db_url, LIMIT_NAME)
                    with SessionGauge(ADMIN_URL, database) as gauge, _watching(order, args):
                        rows.append(run_setup(setup, args, env, urls, kill))
                    if before is not None:
                        time.sleep(1.0)  # the servers' counters written since the run ended
                        rows[-1]["counts"] = (before, Counts.take(counting, ADMIN_URL, pids))
                    servers_pids = {f"headway:{s.pid}" for s in servers}
                    per_server = [n for name, n in gauge.most.items() if name in servers_pids]
                    rows[-1]["sessions"] = max(per_server, default=0)
                    rows[-1]["sessions_elsewhere"] = sorted(
                        name for name in gauge.most if name not in servers_pids
                    )
                else:
                    db_path = os.path.join(env["HEADWAY_HOME"], "headway.db")
                    order = sqlite_watcher(db_path, LIMIT_NAME)
                    with _watching(order, args):
                        rows.append(run_setup(setup, args, env, urls))
                if not args.no_order:
                    rows[-1]["order"] = order.summary()
                if args.kill_one and setup == "postgres":
                    admin.close()  # it went through the killed server
                    admin_env = {**env, "HEADWAY_API_URL": servers[1].url}
                    admin = _make_client(get_settings(admin_env))
                left = admin.read_limit(LIMIT_NAME).active_slots
                rows[-1]["left"] = left
                admin.close()
            finally:
                for server in servers:
                    server.stop()
        print(f"  ({setup} done; load average {os.getloadavg()[0]:.2f})")
    redis_rate = next((r["grants_per_s"] for r in rows if r["setup"] == "redis"), None)
    print(f"ideal for this hold and limit: {ideal:.0f} grants/s")
    header = (
        f"{'setup':<9} {'grants/s':>9} {'x redis':>8} {'commits/grant':>13} {'wait p50':>9}"
        f" {'wait p99':>9} {'util.waiting':>12} {'peak':>5} {'violations':>10} {'errors':>6}"
    )
    print(header)
    for r in rows:
        rate = r["grants_per_s"]
        ratio = f"{rate / redis_rate:.2f}" if redis_rate else "-"
        per_grant = (1 / rate) / commit if rate else float("inf")
        print(
            f"{r['setup']:<9} {rate:>9.0f} {ratio:>8} {per_grant:>13.1f}"
            f" {r['p50_ms']:>7.1f}ms {r['p99_ms']:>7.1f}ms {r['utilization'] * 100:>11.0f}%"
            f" {r['peak']:>5.0f} {r['violations']:>10.0f} {r['errors']:>6}"
        )
        if r["first_error"]:
            print(f"  first error of {r['setup']}: {r['first_error']}")
        if "order" in r:
            print(f"  {r['setup']}: {r['order']}")
        if r.get("left"):
            print(f"  {r['setup']}: {r['left']} slot(s) still held after the run")
        if "counts" in r:
            report(*r["counts"], grants=round(r["grants_per_s"] * args.seconds))
        if "kill" in r:
            k = r["kill"]
            resumed = "never" if k["resumed"] is None else f"{k['resumed'] * 1000:.0f} ms"
            print(
                f"  {r['setup']}: one server killed {k['at']:.1f} s in; each of its client"
                f" processes granted again within"
                f" {resumed}, through another; {k['before']:.0f} grants/s before,"
                f" {k['after']:.0f} after"
            )
        if "sessions" in r:
            print(
                f"  {r['setup']}: at most {r['sessions']} PostgreSQL sessions held at once by"
                f" one server process ({args.servers} servers)"
            )
            if r["sessions_elsewhere"]:
                print(f"  other headway sessions seen: {', '.join(r['sessions_elsewhere'])}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
