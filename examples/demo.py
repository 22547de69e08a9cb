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

The flows stand in for real work with ``work()``, which sleeps a little; how
the demo makes the overlaps and waits it shows certain rather than likely is
in ``_demo_stage.py``, how it reads them back and draws them in
``_demo_timelines.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from _demo_stage import (
    PATIENCE,
    STAGE_ENV,
    Command,
    Stage,
    async_work,
    headway_command,
    in_threads,
    meet,
    stop_with_parent,
    until,
    work,
)
from _demo_timelines import (
    Span,
    at_once,
    by_start,
    handoff,
    run_span,
    runs_since,
    show,
    slot_span,
    task_span,
)

from headway import flow, get_run_logger, task
from headway.concurrency.asyncio import concurrency as async_concurrency
from headway.concurrency.sync import concurrency
from headway.core.states import StateType
from headway.exceptions import AcquireConcurrencySlotTimeoutError, HeadwayError

if TYPE_CHECKING:
    from rich.console import Console

    from headway.client.base import Client
    from headway.core.models import FlowRun

LIMIT = "warehouse"
TAG = "partner-api"
POOL = "demo-pool"
REPORT = "nightly-report"
#: The deployments step 3 serves, each from its own ``nightly_report.serve()`` process.
SERVED = ("overlapping", "one-at-a-time", "no-pileup")


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


# -- the driver ----------------------------------------------------------------------
class Demo:
    """Runs the steps and prints what the store recorded."""

    def __init__(self, console: Console, client: Client, stage: Stage) -> None:
        self.console = console
        self.client = client
        self.stage = stage
        self.config: Command | None = None

    # helpers
    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def headway(self, *args: str) -> str:
        """Run ``headway ARGS`` as a user would, print the command and its output."""
        return Command(self.console, args).finish()

    def limit_exists(self, name: str) -> bool:
        return any(limit.name == name for limit in self.client.list_limits())

    def holder_then_waiter(
        self, first: Callable[[], object], second: Callable[[], object], label: str
    ) -> None:
        """Run ``first`` until it holds the limit, then ``second`` until it waits; let go."""
        self.stage.hold(label)
        (one,) = in_threads(first)
        until("the first run to hold the limit", lambda: self._holders() == 1)
        (two,) = in_threads(second)
        until("the second run to wait", lambda: self.client.read_limit(LIMIT).waiters >= 1)
        self.stage.let_go(label)
        one.join(PATIENCE)
        two.join(PATIENCE)

    def _holders(self) -> int:
        return len(self.client.inspect_limit(LIMIT).holders)

    # the steps
    def clear_leftovers(self) -> None:
        """Cancel the runs an interrupted earlier demo left unfinished on its deployments."""
        unfinished = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING]
        for name in (*SERVED, "pooled"):
            for run in self.client.list_flow_runs(
                deployment=f"{REPORT}/{name}", states=unfinished, limit=200
            ):
                with contextlib.suppress(HeadwayError):
                    self.client.cancel_flow_run(run.id, "left over by an interrupted demo")
                    self.say(f"(cancelled {run.name}, left over by an interrupted demo)")

    def start_early(self) -> None:
        """Start what later steps show, so it is ready when they come: step 1's
        ``headway config`` and step 3's served deployments."""
        self.config = Command(self.console, ["config"])
        for name in SERVED:
            self.stage.spawn([sys.executable, __file__, "--serve", name], f"serve-{name}.log")

    def step_1_unlimited(self) -> None:
        self.console.rule("[bold]1. Flow runs are unlimited by default")
        assert self.config is not None
        config = self.config.finish(quiet=True)
        line = next(x for x in config.splitlines() if x.startswith("Default concurrency"))
        self.say("  [bold]$ headway config[/bold]   (one line of it)")
        self.say(f"    {line.strip()}")
        self.say("  Two runs of [bold]sync_orders[/bold], started together, run at once:")
        since = datetime.now(UTC)
        for thread in in_threads(lambda: sync_orders("north"), lambda: sync_orders("south")):
            thread.join(PATIENCE)
        runs = runs_since(self.client, "sync-orders", since)
        spans = [run_span(self.client, r, f"{r.name} ({r.parameters['shop']})") for r in runs]
        explained = self.client.explain_run(runs[0].id)
        show(self.console, spans)
        self.say(
            f"  Recorded: they ran {at_once(spans)}."
            f" Asked why, headway answers (as `headway why` prints it):\n    {explained.summary}"
        )

    def step_2_global_limit(self) -> None:
        self.console.rule(f"[bold]2. A global concurrency limit: {LIMIT!r}, one slot")
        self.say(
            f"  Its timelines come from the limit's recorded grants and releases: ░ waiting"
            f" for {LIMIT!r}, █ holding it."
        )
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
        spans = self.slot_spans("load-batch", "{name} (batch {batch})", since)
        show(self.console, spans, working="held")
        self.say(
            f"  Recorded: batch B waited {spans[1].waited:.2f} s for {LIMIT!r} (░), then held it"
            f" (█); the two held it {at_once(spans)}."
        )

        self.say(
            "\n  [bold]Skip[/bold]: refresh_report tries"
            f' concurrency("{LIMIT}", timeout_seconds=0.1) and returns early if it is busy:'
        )
        since = datetime.now(UTC)
        self.stage.hold("refresh-first")
        (first,) = in_threads(lambda: refresh_report("first"))
        until("the first refresh to hold the limit", lambda: self._holders() == 1)
        refresh_report("second")
        self.stage.let_go("refresh-first")
        first.join(PATIENCE)
        spans = self.slot_spans("refresh-report", "{name} ({label})", since)
        show(self.console, spans, working="held")
        holder, skipped = runs_since(self.client, "refresh-report", since)
        assert holder.end_time and skipped.end_time
        said = [x.message for _, x in self.client.read_logs(skipped.id) if "skipped" in x.message]
        ahead = (holder.end_time - skipped.end_time).total_seconds()
        self.say(
            f"  Recorded: {skipped.name} never held {LIMIT!r}; it ended"
            f" {skipped.state.type.value} after {skipped.duration_seconds:.2f} s,"
            f" {ahead:.2f} s before {holder.name} did. Its log: {said[0] if said else '-'!r}"
        )

        self.say(
            f"\n  [bold]Critical section[/bold]: sync_region downloads freely; only"
            f' `with concurrency("{LIMIT}"): write_rows(...)` is one at a time:'
        )
        since = datetime.now(UTC)
        for thread in in_threads(lambda: sync_region("east"), lambda: sync_region("west")):
            thread.join(PATIENCE)
        spans = []
        for run in runs_since(self.client, "sync-region", since):
            for t in self.client.read_task_runs(run.id):
                spans.append(task_span(t, f"{run.parameters['region']}: {t.name}"))
        spans = sorted(by_start(spans), key=lambda s: s.label.split(": ")[1])
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
        spans = self.slot_spans("async-load", "{name} (batch {batch})", since)
        show(self.console, spans, working="held")
        self.say(
            f"  Recorded: batch B waited {spans[1].waited:.2f} s (░); the two held"
            f" {LIMIT!r} {at_once(spans)}."
        )

    def slot_spans(self, flow_name: str, label: str, since: datetime) -> list[Span]:
        """This step's runs of ``flow_name`` on the warehouse limit, as recorded; ``label``
        is formatted with the run's name and parameters."""
        return [
            slot_span(self.client, r, LIMIT, label.format(name=r.name, **r.parameters))
            for r in runs_since(self.client, flow_name, since)
        ]

    async def _two_async_loads(self) -> None:
        self.stage.hold("aload-A")
        first = asyncio.create_task(async_load("A"))
        await asyncio.to_thread(until, "async load A to hold", lambda: self._holders() == 1)
        second = asyncio.create_task(async_load("B"))
        await asyncio.to_thread(
            until, "async load B to wait", lambda: self.client.read_limit(LIMIT).waiters >= 1
        )
        self.stage.let_go("aload-A")
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
        self.stage.hold("report-queued-1")
        runs = [self.trigger("one-at-a-time", "queued-1")]
        until("the first queued run to start", lambda: self._state(runs[0]) == "RUNNING")
        runs += [self.trigger("one-at-a-time", f"queued-{i}") for i in (2, 3)]
        until("both newcomers to wait", lambda: all(self._waits(r) for r in runs[1:]))
        self.say(f"  While run 1 runs, why does run 2 ({runs[1].name}) not start?")
        self.headway("why", runs[1].id)
        self.stage.let_go("report-queued-1")
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
        self.stage.hold("report-first")
        runs = [self.trigger("no-pileup", "first")]
        until("the first run to start", lambda: self._state(runs[0]) == "RUNNING")
        runs += [self.trigger("no-pileup", f"late-{i}") for i in (1, 2)]
        until("the newcomers to end", lambda: all(self._final(r) for r in runs[1:]))
        self.stage.let_go("report-first")
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
        # The pool is made while the tag limit is shown; its output comes in its place.
        pool_made = None
        if not any(p.name == POOL for p in self.client.list_work_pools()):
            pool_made = Command(self.console, ["work-pool", "create", POOL])
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
        spans = by_start([slot_span(self.client, t, name) for t in tasks])
        show(self.console, spans, working="held")
        self.say(f"  Recorded: the calls ran {at_once(spans)}.")

        self.say("\n  A work pool whose runs go one at a time, and a worker on it:")
        if pool_made is None:
            self.say(f"  ({POOL!r} exists from an earlier run of the demo)")
        else:
            pool_made.finish()
        self.headway("work-pool", "set-concurrency-limit", POOL, "1")
        nightly_report.deploy(name="pooled", work_pool_name=POOL)
        self.say(f'  nightly_report.deploy(name="pooled", work_pool_name="{POOL}")')
        self.say(f"  [bold]$ headway worker start --pool {POOL}[/bold]   (in the background)")
        self.stage.spawn([*headway_command(), "worker", "start", "--pool", POOL], "worker.log")
        until("the worker to start", lambda: bool(self.client.list_workers(POOL)))
        for label in ("pool-1", "pool-2"):
            self.stage.hold(f"report-{label}")
        runs = [self.trigger("pooled", label) for label in ("pool-1", "pool-2")]
        until(
            "one pooled run to run and one to wait",
            lambda: (
                sorted(self._state(r) for r in runs) == ["RUNNING", "SCHEDULED"]
                and any(self._waits(r) for r in runs)
            ),
        )
        for label in ("pool-1", "pool-2"):
            self.stage.let_go(f"report-{label}")
        self.wait_final(runs)
        spans = [run_span(self.client, r) for r in runs]
        show(self.console, spans)
        self.say(
            f"  Recorded: one at a time; {runs[1].name if spans[1].waited else runs[0].name}"
            f" got the pool's slot {handoff(*by_start(spans)) * 1000:.0f} ms"
            " after the other ended."
        )

    def step_5_look_further(self) -> None:
        settings = self.client.settings
        self.console.rule("[bold]5. Look further")
        lines = [
            (f"headway gcl inspect {LIMIT}", "the limit, who holds it, who waits"),
            ("headway gcl ls", "every limit, with its grants and waits"),
            ("headway flow-run ls", "the runs above, newest first"),
            ("headway why RUN_ID", "what a run waits for, or waited for"),
            (
                "headway server start",
                f"the dashboard, at http://{settings.server_host}:{settings.server_port}/",
            ),
        ]
        width = max(len(command) for command, _ in lines)
        for command, what in lines:
            self.say(f"  {command:<{width}}   # {what}")
        (script,) = headway_command()[:1]
        if script.endswith("headway") and shutil.which("headway") != script:
            where = os.path.relpath(Path(script).parent)
            self.say(
                f"  (headway is {where}/headway here: `source {where}/activate` puts it on PATH)"
            )


def main(argv: Sequence[str]) -> int:
    """Run the demo (``--serve NAME``: serve one of step 3's deployments until SIGINT)."""
    if argv[:1] == ["--serve"]:
        stop_with_parent()
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
        stage = Stage(Path(scratch))
        demo = Demo(console, client, stage)
        console.rule("[bold]headway demo")
        settings = client.settings
        where = (
            f"the server at {settings.api_url}"
            if settings.api_url
            else "the database in HEADWAY_DATABASE_URL"
            if settings.database_url
            else f"{settings.home / 'headway.db'} (embedded SQLite, no server)"
        )
        demo.say(f"Store: {where}. Every table below is read back from it.")
        try:
            demo.clear_leftovers()
            demo.start_early()
            demo.step_1_unlimited()
            demo.step_2_global_limit()
            demo.step_3_deployments()
            demo.step_4_tag_and_pool()
            demo.step_5_look_further()
        except Exception:
            for name, text in stage.logs():
                console.print(f"--- {name} ---", highlight=False)
                console.print(text, markup=False)
            raise
        finally:
            with contextlib.suppress(Exception):
                stage.stop()
    console.print(f"\n(demo done in {time.monotonic() - started:.1f} s)", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
