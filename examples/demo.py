"""headway demo: concurrency, told in five steps, on the embedded store.

1. Flow runs are unlimited by default: two runs of one flow overlap.
2. A global limit (``headway gcl create warehouse --limit 1``) used from code
   four ways: queue, skip, critical section, asyncio.
3. Served deployments (``flow.serve()`` in processes of their own): no limit,
   ENQUEUE (with ``headway why`` on a waiting run) and CANCEL_NEW.
4. A task-tag limit and a work-pool limit.
5. Where to look further.

Every table is read back from the store after the fact: the start and end
times, states and waits that headway recorded, not what the script expected.

Run it with ``make demo`` or ``python examples/demo.py``; the store is
``$HEADWAY_HOME/headway.db`` (default ``~/.headway``). Running it again on the
same store works: limits, pools and deployments that exist are reused.

The flows below stand in for real work with :func:`work`, which sleeps a little.
So that the overlaps and the waits shown are certain rather than likely, the
demo's driver can also hold a piece of work back until it has seen, in the
store, what it wants to show (a holder, a waiter): it does so through files
in a scratch directory named by ``HEADWAY_DEMO_STAGE``. Without that variable
(the flows run by hand) :func:`work` only sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from headway import flow, get_run_logger, task
from headway.concurrency.asyncio import concurrency as async_concurrency
from headway.concurrency.sync import concurrency
from headway.exceptions import AcquireConcurrencySlotTimeoutError

if TYPE_CHECKING:
    from rich.console import Console

    from headway.client.base import Client
    from headway.core.models import FlowRun, TaskRun

STAGE_ENV = "HEADWAY_DEMO_STAGE"
LIMIT = "warehouse"
TAG = "partner-api"
POOL = "demo-pool"
REPORT = "nightly-report"
#: The deployments step 3 serves, each from its own ``nightly_report.serve()`` process.
SERVED = ("overlapping", "one-at-a-time", "no-pileup")
#: The longest the demo waits for anything it expects to see in the store.
PATIENCE = 60.0


# -- the work -------------------------------------------------------------------------
def _stage() -> Path | None:
    where = os.environ.get(STAGE_ENV)
    return Path(where) if where else None


def work(label: str, seconds: float = 0.2) -> None:
    """Stand-in for real work: ``seconds`` of it, longer while the demo holds ``label`` back."""
    time.sleep(seconds)
    stage = _stage()
    deadline = time.monotonic() + PATIENCE
    while stage is not None and (stage / f"{label}.hold").exists():
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)


async def async_work(label: str, seconds: float = 0.2) -> None:
    """:func:`work` for asyncio code."""
    await asyncio.sleep(seconds)
    stage = _stage()
    deadline = time.monotonic() + PATIENCE
    while stage is not None and (stage / f"{label}.hold").exists():
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)


def meet(group: str, count: int) -> None:
    """Under the demo, return once ``count`` callers (threads or processes) have arrived."""
    stage = _stage()
    if stage is None or count < 2:
        return
    room = stage / f"meet-{group}"
    room.mkdir(exist_ok=True)
    (room / uuid.uuid4().hex).touch()
    deadline = time.monotonic() + PATIENCE
    while len(list(room.iterdir())) < count and time.monotonic() < deadline:
        time.sleep(0.01)


# -- the flows ------------------------------------------------------------------------
@flow
def sync_orders(shop: str) -> None:
    """Step 1: pull a shop's new orders. Nothing limits it."""
    meet("sync-orders", 2)
    work(f"sync-{shop}")


@flow
def load_batch(batch: str) -> None:
    """Step 2, queue: load a batch into the warehouse, waiting as long as it takes."""
    with concurrency(LIMIT, timeout_seconds=None):
        work(f"load-{batch}")


@flow
def refresh_report(label: str) -> str:
    """Step 2, skip: refresh a report, or skip it if the warehouse is busy."""
    try:
        with concurrency(LIMIT, timeout_seconds=0.1):
            work(f"refresh-{label}")
    except AcquireConcurrencySlotTimeoutError:
        get_run_logger().info("the warehouse is busy: skipped this refresh")
        return "skipped"
    return "refreshed"


@task
def download(region: str) -> None:
    """Fetch a region's data: any number at once."""
    meet("download", 2)
    work(f"download-{region}")


@task
def write_rows(region: str) -> None:
    """Write a region's rows into the warehouse."""
    work(f"write-{region}")


@flow
def sync_region(region: str) -> None:
    """Step 2, critical section: only the write holds the warehouse."""
    download(region)
    with concurrency(LIMIT):
        write_rows(region)


@flow
async def async_load(batch: str) -> None:
    """Step 2, asyncio: the same limit, awaited."""
    async with async_concurrency(LIMIT):
        await async_work(f"aload-{batch}")


@flow
def nightly_report(label: str = "manual", together: int = 1) -> None:
    """Build the nightly sales report."""
    # Steps 3 and 4 deploy this flow; ``together`` runs meet before working (under the demo).
    meet(f"report-{together}", together)
    work(f"report-{label}")


@task(tags=[TAG])
def call_partner(item: int) -> None:
    """Step 4: one call to a partner's API, at most one at a time (its tag is limited)."""
    work(f"partner-{item}", 0.15)


@flow
def enrich_products(items: list[int]) -> None:
    """Step 4: call the partner API for each item, on the thread-pool task runner."""
    call_partner.map(items).result()


def serve_deployment(name: str) -> None:
    """Step 3's served processes: ``nightly_report.serve()`` with the limit its name says."""
    from headway.deployments import ConcurrencyLimitConfig

    limits = {
        "overlapping": None,
        "one-at-a-time": ConcurrencyLimitConfig(limit=1, collision_strategy="ENQUEUE"),
        "no-pileup": ConcurrencyLimitConfig(limit=1, collision_strategy="CANCEL_NEW"),
    }
    nightly_report.serve(name=name, concurrency_limit=limits[name])


# -- reading the store back -------------------------------------------------------------
@dataclass(frozen=True)
class Span:
    """One row of a timeline, as recorded: waiting for a slot, starting, working."""

    label: str
    state: str
    #: Waiting for a slot from ``waiting`` until ``granted``; starting (a deployment
    #: run's process) until ``start``; working until ``end``.
    waiting: datetime | None
    granted: datetime | None
    start: datetime | None
    end: datetime | None

    @property
    def waited(self) -> float | None:
        """Seconds spent waiting for a slot (to the end, if it never got one)."""
        if self.waiting is None:
            return None
        return ((self.granted or self.end or self.waiting) - self.waiting).total_seconds()


def handoff(before: Span, after: Span) -> float:
    """Seconds from ``before`` ending to ``after`` getting its slot."""
    assert before.end and after.granted
    return (after.granted - before.end).total_seconds()


def run_span(client: Client, run: FlowRun, label: str | None = None) -> Span:
    """A flow run as the store recorded it (its states, and the waits ``why`` reports)."""
    run = client.read_flow_run(run.id)
    waiting = granted = None
    start = run.start_time
    if run.deployment is not None:  # due when created; claimed (slots taken) when PENDING
        waiting = run.created
        pending = [s.timestamp for s in client.read_states(run.id) if s.type.value == "PENDING"]
        granted = pending[0] if pending else None
    slot_waits = [w for w in client.explain_run(run.id).waited if w.what == "slot"]
    if slot_waits and run.start_time is not None:  # concurrency() inside the run
        waiting, granted = run.start_time, max(w.until for w in slot_waits)
        start = granted
    name = run.state.name if run.state.name != run.state.type.value.title() else ""
    state = run.state.type.value + (f" ({name})" if name else "")
    return Span(label or run.name, state, waiting, granted, start, run.end_time)


def task_span(label: str, task_run: TaskRun) -> Span:
    """A task run as recorded."""
    state = task_run.state.type.value
    return Span(label, state, None, None, task_run.start_time, task_run.end_time)


def overlap(a: Span, b: Span) -> float:
    """Seconds during which both spans were working (negative: the gap between them)."""
    assert a.start and a.end and b.start and b.end
    return (min(a.end, b.end) - max(a.start, b.start)).total_seconds()


def at_once(spans: Sequence[Span]) -> str:
    """How the spans' working times relate: all at once for a while, or never two at once."""
    shared = [overlap(a, b) for a, b in itertools.combinations(spans, 2)]
    if all(seconds > 0 for seconds in shared):
        return f"at once (each pair for at least {min(shared):.2f} s)"
    if all(seconds <= 0 for seconds in shared):
        return f"one at a time (never two at once; the closest {-max(shared):.3f} s apart)"
    return "partly at once"


def show(console: Console, spans: Sequence[Span], width: int = 36) -> None:
    """A table of spans with a timeline: ░ waiting for a slot, ▒ starting, █ working."""
    from rich.table import Table

    times = [t for s in spans for t in (s.waiting, s.granted, s.start, s.end) if t is not None]
    origin, last = min(times), max(times)
    scale = max((last - origin).total_seconds(), 1e-6) / width

    def at(t: datetime) -> float:
        return (t - origin).total_seconds()

    def paint(bar: list[str], mark: str, begin: datetime | None, end: datetime | None) -> None:
        if begin is None:
            return
        first = min(int(at(begin) / scale), width - 1)
        for i in range(first, max(first + 1, min(width, round(at(end or last) / scale)))):
            bar[i] = mark

    table = Table(box=None, padding=(0, 1), header_style="bold")
    for column in ("run", "state", "waited", "ran (s)", "timeline"):
        table.add_column(column, justify="right" if column == "waited" else "left")
    for s in spans:
        bar = [" "] * width
        paint(bar, "░", s.waiting, s.granted or s.start or s.end)
        paint(bar, "▒", s.granted, s.start)
        paint(bar, "█", s.start, s.end)
        waited = "-" if s.waited is None else f"{s.waited:.2f}s"
        ran = "-" if s.start is None else f"{at(s.start):5.2f}-{at(s.end or last):5.2f}"
        table.add_row(f"  {s.label}", s.state, waited, ran, "[cyan]" + "".join(bar) + "[/cyan]")
    console.print(table)


def runs_since(client: Client, flow_name: str, since: datetime) -> list[FlowRun]:
    """The runs of ``flow_name`` created since ``since``, oldest first."""
    runs = client.list_flow_runs(flow_name=flow_name, limit=50)
    return sorted((r for r in runs if r.created and r.created >= since), key=_created)


def _started(span: Span) -> datetime:
    assert span.start is not None
    return span.start


def _created(run: FlowRun) -> datetime:
    assert run.created is not None
    return run.created


def until(what: str, check: Callable[[], bool], timeout: float = PATIENCE) -> None:
    """Wait until ``check()`` is true (it reads the store); fail with ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the demo waited {timeout:g} s for {what}; it never came")
        time.sleep(0.02)


# -- the driver -------------------------------------------------------------------------
class Demo:
    """Runs the steps and prints what the store recorded."""

    def __init__(self, console: Console, client: Client, stage: Path) -> None:
        self.console = console
        self.client = client
        self.stage = stage
        self.children: list[subprocess.Popen[bytes]] = []
        self.cli_path = Path(sys.executable).with_name("headway")

    # helpers
    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def headway(self, *args: str, quiet: bool = False) -> str:
        """Run ``headway ARGS`` as a user would, print the command and its output."""
        command = [str(self.cli_path)] if self.cli_path.exists() else [
            sys.executable, "-c", "from headway.cli import run; run()"]  # fmt: skip
        env = {**os.environ, "COLUMNS": "200"}
        done = subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, timeout=PATIENCE
        )
        if done.returncode != 0:
            raise RuntimeError(f"headway {' '.join(args)} failed:\n{done.stderr}")
        if not quiet:
            self.console.print(f"  [bold]$ headway {' '.join(args)}[/bold]", highlight=False)
            for line in done.stdout.rstrip().splitlines():
                self.console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
        return done.stdout

    def hold(self, label: str) -> None:
        (self.stage / f"{label}.hold").touch()

    def let_go(self, label: str) -> None:
        (self.stage / f"{label}.hold").unlink(missing_ok=True)

    def spawn(self, args: Sequence[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.stage / log, "wb") as out:
            child = subprocess.Popen(
                list(args), env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT
            )
        self.children.append(child)
        return child

    def stop_children(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in self.children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def limit_exists(self, name: str) -> bool:
        return any(limit.name == name for limit in self.client.list_limits())

    def in_threads(self, *calls: Callable[[], object]) -> list[threading.Thread]:
        threads = [threading.Thread(target=call, daemon=True) for call in calls]
        for thread in threads:
            thread.start()
        return threads

    def holder_then_waiter(self, first: Callable[[], object], second: Callable[[], object],
                           label: str) -> None:  # fmt: skip
        """Run ``first`` until it holds the limit, then ``second`` until it waits; let go."""
        self.hold(label)
        (one,) = self.in_threads(first)
        until("the first run to hold the limit", lambda: self._holders() == 1)
        (two,) = self.in_threads(second)
        until("the second run to wait", lambda: self.client.read_limit(LIMIT).waiters >= 1)
        self.let_go(label)
        one.join(PATIENCE)
        two.join(PATIENCE)

    def _holders(self) -> int:
        return len(self.client.inspect_limit(LIMIT).holders)

    # the steps
    def start_servers(self) -> None:
        """Start step 3's served deployments now, so they are up when step 3 comes."""
        for name in SERVED:
            self.spawn([sys.executable, __file__, "--serve", name], f"serve-{name}.log")

    def step_1_unlimited(self) -> None:
        self.console.rule("[bold]1. Flow runs are unlimited by default")
        config = self.headway("config", quiet=True)
        line = next(x for x in config.splitlines() if x.startswith("Default concurrency"))
        self.say("  [bold]$ headway config[/bold]   (one line of it)")
        self.say(f"    {line.strip()}")
        self.say("  Two runs of [bold]sync_orders[/bold], started together, run at once:")
        since = datetime.now(UTC)
        for thread in self.in_threads(lambda: sync_orders("north"),
                                      lambda: sync_orders("south")):  # fmt: skip
            thread.join(PATIENCE)
        runs = runs_since(self.client, "sync-orders", since)
        spans = [run_span(self.client, r, f"{r.name} ({r.parameters['shop']})") for r in runs]
        explained = self.client.explain_run(runs[0].id)
        show(self.console, spans)
        self.say(
            f"  Recorded: they ran {at_once(spans)}."
            f" `headway why` on {runs[0].name} says:\n    {explained.summary}"
        )

    def step_2_global_limit(self) -> None:
        self.console.rule(f"[bold]2. A global concurrency limit: {LIMIT!r}, one slot")
        if self.limit_exists(LIMIT):
            self.say(f"  ({LIMIT!r} exists from an earlier run of the demo: set it to 1 again)")
            self.headway("gcl", "update", LIMIT, "--limit", "1")
        else:
            self.headway("gcl", "create", LIMIT, "--limit", "1")

        self.say(
            "\n  [bold]Queue[/bold]: load_batch holds it with"
            f' concurrency("{LIMIT}", timeout_seconds=None); a second run waits its turn:'
        )
        since = datetime.now(UTC)
        self.holder_then_waiter(lambda: load_batch("A"), lambda: load_batch("B"), "load-A")
        spans = [run_span(self.client, r, f"{r.name} (batch {r.parameters['batch']})")
                 for r in runs_since(self.client, "load-batch", since)]  # fmt: skip
        show(self.console, spans)
        self.say(
            f"  Recorded: batch B waited {spans[1].waited:.2f} s for {LIMIT!r} (░), then ran;"
            f" the two loads ran {at_once(spans)}."
        )

        self.say(
            "\n  [bold]Skip[/bold]: refresh_report tries"
            f' concurrency("{LIMIT}", timeout_seconds=0.1) and returns early if it is busy:'
        )
        since = datetime.now(UTC)
        self.hold("refresh-first")
        (first,) = self.in_threads(lambda: refresh_report("first"))
        until("the first refresh to hold the limit", lambda: self._holders() == 1)
        refresh_report("second")
        self.let_go("refresh-first")
        first.join(PATIENCE)
        runs = runs_since(self.client, "refresh-report", since)
        show(self.console, [run_span(self.client, r, f"{r.name} ({r.parameters['label']})")
                            for r in runs])  # fmt: skip
        holder, skipped = (self.client.read_flow_run(r.id) for r in runs)
        assert holder.end_time and skipped.end_time
        said = [x.message for _, x in self.client.read_logs(skipped.id) if "skipped" in x.message]
        ahead = (holder.end_time - skipped.end_time).total_seconds()
        self.say(
            f"  Recorded: {skipped.name} ended {skipped.state.type.value} after"
            f" {skipped.duration_seconds:.2f} s, {ahead:.2f} s before {holder.name} let go;"
            f" its log says: {said[0] if said else '(nothing)'!r}"
        )

        self.say(
            f"\n  [bold]Critical section[/bold]: sync_region downloads freely; only"
            f' `with concurrency("{LIMIT}"): write_rows(...)` is one at a time:'
        )
        since = datetime.now(UTC)
        for thread in self.in_threads(lambda: sync_region("east"),
                                      lambda: sync_region("west")):  # fmt: skip
            thread.join(PATIENCE)
        spans = []
        for run in runs_since(self.client, "sync-region", since):
            for t in self.client.read_task_runs(run.id):
                label = f"{run.parameters['region']}: {t.name}"
                spans.append(task_span(label, t))
        spans.sort(key=lambda s: (s.label.split(": ")[1], s.label))
        show(self.console, spans)
        self.say(
            f"  Recorded: the downloads ran {at_once(spans[:2])};"
            f" the writes ran {at_once(spans[2:])}."
        )

        self.say(
            "\n  [bold]asyncio[/bold]: async_load uses headway.concurrency.asyncio's"
            f' `async with concurrency("{LIMIT}")`; two runs gathered on one event loop:'
        )
        since = datetime.now(UTC)
        asyncio.run(self._two_async_loads())
        spans = [run_span(self.client, r, f"{r.name} (batch {r.parameters['batch']})")
                 for r in runs_since(self.client, "async-load", since)]  # fmt: skip
        show(self.console, spans)
        self.say(
            f"  Recorded: batch B waited {spans[1].waited:.2f} s (░); the two held"
            f" {LIMIT!r} {at_once(spans)}."
        )

    async def _two_async_loads(self) -> None:
        self.hold("aload-A")
        first = asyncio.create_task(async_load("A"))
        await asyncio.to_thread(until, "async load A to hold", lambda: self._holders() == 1)
        second = asyncio.create_task(async_load("B"))
        await asyncio.to_thread(
            until, "async load B to wait", lambda: self.client.read_limit(LIMIT).waiters >= 1
        )
        self.let_go("aload-A")
        await asyncio.gather(first, second)

    def step_3_deployments(self) -> None:
        self.console.rule("[bold]3. A served deployment and its concurrency limit")
        self.say(
            "  nightly_report is served three times, each by `nightly_report.serve(name=...,"
            " concurrency_limit=...)` in a process of its own (started as the demo began)."
            " Runs are triggered with `client.create_deployment_run()`, as"
            " `headway deployment run` does. In the timelines: ░ waiting for a slot,"
            " ▒ the run's process starting, █ running."
        )
        self.say(f"\n  [bold]{REPORT}/overlapping[/bold]: no limit; three triggered runs overlap:")
        runs = [self.trigger("overlapping", f"free-{i}", together=3) for i in (1, 2, 3)]
        self.wait_final(runs)
        spans = [run_span(self.client, r) for r in runs]
        show(self.console, spans)
        self.say(f"  Recorded: the three ran {at_once(spans)}.")

        self.say(
            f"\n  [bold]{REPORT}/one-at-a-time[/bold]: ConcurrencyLimitConfig(limit=1,"
            ' collision_strategy="ENQUEUE"); the newcomers wait their turn:'
        )
        self.hold("report-queued-1")
        runs = [self.trigger("one-at-a-time", "queued-1")]
        until("the first queued run to start", lambda: self._state(runs[0]) == "RUNNING")
        runs += [self.trigger("one-at-a-time", f"queued-{i}") for i in (2, 3)]
        until("both newcomers to wait", lambda: all(self._waits(r) for r in runs[1:]))
        self.say(f"  While run 1 runs, why does run 2 ({runs[1].name}) not start?")
        self.headway("why", runs[1].id)
        self.let_go("report-queued-1")
        self.wait_final(runs)
        spans = [run_span(self.client, r) for r in runs]
        show(self.console, spans)
        gaps = [handoff(a, b) for a, b in itertools.pairwise(spans)]
        self.say(
            "  Recorded: one after another. The slot passed on "
            + " and ".join(f"{g * 1000:.0f} ms" for g in gaps)
            + " after the previous run ended; then the run's process started (▒)."
        )

        self.say(
            f"\n  [bold]{REPORT}/no-pileup[/bold]: ConcurrencyLimitConfig(limit=1,"
            ' collision_strategy="CANCEL_NEW"); newcomers are cancelled:'
        )
        self.hold("report-first")
        runs = [self.trigger("no-pileup", "first")]
        until("the first run to start", lambda: self._state(runs[0]) == "RUNNING")
        runs += [self.trigger("no-pileup", f"late-{i}") for i in (1, 2)]
        until("the newcomers to end", lambda: all(self._final(r) for r in runs[1:]))
        self.let_go("report-first")
        self.wait_final(runs)
        spans = [run_span(self.client, r) for r in runs]
        show(self.console, spans)
        late = [self.client.read_flow_run(r.id).state for r in runs[1:]]
        ended = ", ".join(sorted({s.type.value for s in late}))
        self.say(f"  Recorded for the {len(late)} newcomers: {ended}, {late[0].message!r}")

    def trigger(self, deployment: str, label: str, together: int = 1) -> FlowRun:
        return self.client.create_deployment_run(
            f"{REPORT}/{deployment}", parameters={"label": label, "together": together}
        )

    def _state(self, run: FlowRun) -> str:
        return self.client.read_flow_run(run.id).state.type.value

    def _final(self, run: FlowRun) -> bool:
        return self.client.read_flow_run(run.id).state.is_final

    def _waits(self, run: FlowRun) -> bool:
        return bool(self.client.explain_run(run.id).blockers)

    def wait_final(self, runs: Sequence[FlowRun]) -> None:
        until("the runs to end", lambda: all(self._final(r) for r in runs))

    def step_4_tag_and_pool(self) -> None:
        self.console.rule("[bold]4. A task-tag limit and a work-pool limit")
        name = f"tag:{TAG}"
        if self.limit_exists(name):
            self.say(f"  ({name!r} exists from an earlier run of the demo: set it to 1 again)")
            self.headway("gcl", "update", name, "--limit", "1")
        else:
            self.headway("concurrency-limit", "create", TAG, "1")
        self.say(
            f"  enrich_products maps call_partner (tags=[{TAG!r}]) over three items on the"
            " thread-pool task runner; the tag lets one run at a time:"
        )
        since = datetime.now(UTC)
        enrich_products([1, 2, 3])
        (run,) = runs_since(self.client, "enrich-products", since)
        tasks = self.client.read_task_runs(run.id)
        spans = [task_span(t.name, t) for t in tasks]
        spans.sort(key=lambda s: s.start or since)
        show(self.console, spans)
        self.say(f"  Recorded: the calls ran {at_once(spans)}.")

        self.say("\n  A work pool whose runs go one at a time, and a worker on it:")
        if any(p.name == POOL for p in self.client.list_work_pools()):
            self.say(f"  ({POOL!r} exists from an earlier run of the demo)")
        else:
            self.headway("work-pool", "create", POOL)
        self.headway("work-pool", "set-concurrency-limit", POOL, "1")
        nightly_report.deploy(name="pooled", work_pool_name=POOL)
        self.say(f'  nightly_report.deploy(name="pooled", work_pool_name="{POOL}")')
        self.say(f"  [bold]$ headway worker start --pool {POOL}[/bold]   (in the background)")
        command = [str(self.cli_path)] if self.cli_path.exists() else [
            sys.executable, "-c", "from headway.cli import run; run()"]  # fmt: skip
        self.spawn([*command, "worker", "start", "--pool", POOL], "worker.log")
        until("the worker to start", lambda: bool(self.client.list_workers(POOL)))
        for label in ("pool-1", "pool-2"):
            self.hold(f"report-{label}")
        runs = [self.trigger("pooled", label) for label in ("pool-1", "pool-2")]
        until("one pooled run to run and one to wait",
              lambda: sorted(self._state(r) for r in runs) == ["RUNNING", "SCHEDULED"]
              and any(self._waits(r) for r in runs))  # fmt: skip
        for label in ("pool-1", "pool-2"):
            self.let_go(f"report-{label}")
        self.wait_final(runs)
        spans = [run_span(self.client, r) for r in runs]
        show(self.console, spans)
        self.say(
            f"  Recorded: one at a time; {runs[1].name if spans[1].waited else runs[0].name}"
            f" got the pool's slot {handoff(*sorted(spans, key=_started)) * 1000:.0f} ms"
            " after the other ended."
        )

    def step_5_look_further(self) -> None:
        settings = self.client.settings
        self.console.rule("[bold]5. Look further")
        self.say(
            f"  headway gcl inspect {LIMIT}          # the limit, its holders and waiters\n"
            f"  headway gcl ls                          # every limit, with grants and waits\n"
            f"  headway flow-run ls                     # the runs above, newest first\n"
            f"  headway why RUN_ID                      # what a run waits for, or waited for\n"
            f"  headway server start                    # then open the dashboard:"
            f" http://{settings.server_host}:{settings.server_port}/"
        )


def _stop_with_parent() -> None:
    # A served process must not outlive the demo, even one killed with SIGKILL.
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: Sequence[str]) -> int:
    """Run the demo (``--serve NAME``: serve one of step 3's deployments until SIGINT)."""
    if argv[:1] == ["--serve"]:
        _stop_with_parent()
        serve_deployment(argv[1])
        return 0
    # Run lines at INFO would bury the story; the store records them all the same.
    os.environ.setdefault("HEADWAY_LOGGING_LEVEL", "WARNING")
    from rich.console import Console

    from headway.client.base import get_client

    # Piped (a test, a log file) it gets a fixed width, so nothing is cut at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=100)
    client = get_client()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="headway-demo-") as scratch:
        os.environ[STAGE_ENV] = scratch
        demo = Demo(console, client, Path(scratch))
        console.rule("[bold]headway demo")
        demo.say(
            f"Store: {client.settings.home / 'headway.db'} (embedded SQLite; no server)."
            " Every table below is read back from it."
        )
        try:
            demo.start_servers()
            demo.step_1_unlimited()
            demo.step_2_global_limit()
            demo.step_3_deployments()
            demo.step_4_tag_and_pool()
            demo.step_5_look_further()
        except BaseException:
            for log in sorted(Path(scratch).glob("*.log")):
                console.print(f"--- {log.name} ---", highlight=False)
                console.print(log.read_text(errors="replace")[-3000:], markup=False)
            raise
        finally:
            with contextlib.suppress(Exception):
                demo.stop_children()
    console.print(f"\n(demo done in {time.monotonic() - started:.1f} s)", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
