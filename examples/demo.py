"""headway demo: a few flows on the embedded store, then what the store recorded.

Runs four things headway users do every day, without any server:

* a flow whose first task fails once and succeeds on retry,
* ``task.map()`` over a list, on the default thread-pool task runner,
* a subflow (a flow called inside a flow), recorded as a child run,
* a flow that fails, recorded FAILED with its error.

Then it reads the runs back from the store (not from memory) and prints them.
Run it with ``make demo`` or ``python examples/demo.py``; the store is
``$HEADWAY_HOME/headway.db`` (default ``~/.headway/headway.db``).
"""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

from headway import flow, get_run_logger, task, unmapped

if TYPE_CHECKING:
    from rich.console import Console

    from headway.client.base import Client
    from headway.core.models import TaskRun
    from headway.core.states import State

_attempts: dict[str, int] = {}


@task(retries=2, retry_delay_seconds=0.2)
def fetch_orders(region: str) -> list[int]:
    """Orders of a region; the first call for each region times out (a flaky API)."""
    _attempts[region] = _attempts.get(region, 0) + 1
    if _attempts[region] == 1:
        raise TimeoutError(f"orders API for {region} did not answer")
    rng = random.Random(region)
    return [rng.randint(5, 120) for _ in range(4)]


@task
def convert(amount: int, rate: float) -> float:
    """One amount in euros."""
    return round(amount * rate, 2)


@task
def total(amounts: list[float]) -> float:
    """The sum of some amounts."""
    return round(sum(amounts), 2)


@flow
def regional_report(region: str, amounts: list[float]) -> str:
    """A subflow: one region's line of the report."""
    line = f"{region}: {len(amounts)} orders, {total(amounts):.2f} EUR"
    get_run_logger().info(line)
    return line


@flow(log_prints=True)
def daily_orders(regions: list[str], rate: float = 0.92) -> list[str]:
    """Fetch each region's orders (with retries), convert them in parallel, report."""
    lines = []
    for region in regions:
        orders = fetch_orders(region)
        amounts = convert.map(orders, rate=unmapped(rate)).result()
        lines.append(regional_report(region, amounts))
    print(f"report ready: {len(lines)} regions")
    return lines


@task
def load_into_warehouse(rows: int) -> None:
    """A task that always fails: the warehouse is down."""
    raise ConnectionRefusedError(f"warehouse refused {rows} rows")


@flow
def nightly_load() -> None:
    """A flow that fails because its task fails."""
    load_into_warehouse(1200)


def main() -> None:
    """Run the demo flows, then print what the store holds about them."""
    from rich.console import Console

    from headway.client.base import get_client

    console = Console()
    client = get_client()
    settings = client.settings
    where = (
        settings.api_url
        or (settings.database_url and "the database in HEADWAY_DATABASE_URL")
        or str(settings.home / "headway.db")
    )
    source = "HEADWAY_HOME" if os.environ.get("HEADWAY_HOME") else "default location"
    console.rule("[bold]headway demo")
    console.print(f"Store: [bold]{where}[/bold] ({source}); no server needed.\n")

    report = daily_orders(["north", "south", "east"], return_state=True)
    console.print(f"\n[green]daily-orders[/green] returned: {report.result()}\n")  # type: ignore[attr-defined]
    failed = nightly_load(return_state=True)
    console.print(f"\n[red]nightly-load[/red] ended {failed.name}: {failed.message}\n")

    _show_recorded(console, client)


def _show_recorded(console: Console, client: Client) -> None:
    from rich.table import Table

    console.rule("[bold]What the store recorded")
    runs = client.list_flow_runs(limit=50)  # newest first: this demo's runs lead
    parent = next(r for r in runs if r.flow_name == "daily-orders")
    children = [r for r in runs if r.flow_name == "regional-report"][:3]
    failing = next(r for r in runs if r.flow_name == "nightly-load")
    for run in [parent, *reversed(children), failing]:
        detail = client.read_flow_run(run.id, with_task_runs=True)
        colour = {"COMPLETED": "green", "FAILED": "red"}.get(detail.state.type.value, "yellow")
        title = f"[bold]{detail.flow_name}[/bold] [cyan]{detail.name}[/cyan] {detail.id}"
        if detail.parent_task_run_id:
            link = client.read_task_run(detail.parent_task_run_id)
            title += f"\n  subflow of {link.flow_run_id}, recorded there as task run {link.name!r}"
        console.print(title)
        history = " -> ".join(_label(s) for s in client.read_states(detail.id))
        console.print(f"  [{colour}]{detail.state.type.value}[/{colour}]: {history}")
        if detail.state.message:
            console.print(f"  error: {detail.state.message}")
        console.print(f"  parameters: {detail.parameters}")
        # Task runs, grouped by task: how many, how they ended, how often they ran.
        groups: dict[str, list[TaskRun]] = {}
        for t in detail.task_runs or ():
            groups.setdefault(t.name.rsplit("-", 1)[0], []).append(t)
        if groups:
            table = Table(box=None, padding=(0, 2), header_style="bold")
            for column in ("task", "runs", "ended", "attempts", "states of the first run"):
                table.add_column(column)
            for name, members in groups.items():
                ended = sorted({t.state.type.value for t in members})
                attempts = sum(t.run_count for t in members)
                first = " -> ".join(_label(s) for s in client.read_states(members[0].id))
                table.add_row(name, str(len(members)), ", ".join(ended), str(attempts), first)
            console.print(table)
        for _, line in client.read_logs(detail.id)[:4]:
            source = "task" if line.task_run_id else "flow"
            console.print(
                f"  [dim]log[/dim] {line.level_name:<7} ({source}) {line.message.splitlines()[0]}"
            )
        console.print()
    console.rule()
    console.print(
        "Explore them yourself:\n"
        "  headway flow-run ls\n"
        f"  headway flow-run inspect {parent.id}\n"
        f"  headway flow-run logs {parent.id}\n"
        "  headway config"
    )


def _label(state: State) -> str:
    return state.name


if __name__ == "__main__":
    main()
