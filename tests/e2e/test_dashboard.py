"""The dashboard in a real browser: headless Chromium against a live ``headway server start``.

The module starts one server as a subprocess on a free loopback port over a
temporary HEADWAY_HOME, with an API key required. Each browser test drives the
page the way a user does (clicks, forms, dialogs), checks what the page shows
against the API, and saves screenshots in its ``tmp_path``; every page also
checks that the browser asked nothing of any other origin and that no script
error happened. The last tests fetch the dashboard's files without the key.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_chromium import launch, require_chromium

from headway.server.runner import ServerProcess
from headway.server.ui import CONTENT_TYPES, VERSION_MARK

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py

#: How long the page may take to show what a test waits for (a loaded CI machine is slow).
UI_TIMEOUT_MS = 30_000
#: The API key of the module's server: the dashboard is tested with the key on.
KEY = "key-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (each test opens its own context)."""
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def live_server(folder: Path, api_key: str | None = None) -> Iterator[ServerProcess]:
    """``headway server start`` on a free loopback port over a new HEADWAY_HOME in ``folder``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWAY_")}
    env["HEADWAY_HOME"] = str(folder / "headway-home")
    if api_key is not None:
        env["HEADWAY_API_KEY"] = api_key
    with ServerProcess(env, log_path=folder / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server, with the API key :data:`KEY` required, for every test of the module.

    Starting a server costs seconds on a loaded machine; the tests share one
    and use names of their own, asserting only about the objects they made.
    """
    with live_server(tmp_path_factory.mktemp("dashboard-server"), api_key=KEY) as running:
        yield running


def call(server: ServerProcess, method: str, path: str, body: Any = None) -> Any:
    """One API call with the key, checked for success; the decoded answer (None for 204)."""
    headers = {"Authorization": f"Bearer {KEY}"}
    answer = httpx.request(
        method, f"{server.url}/api/v1{path}", json=body, headers=headers, timeout=10
    )
    assert answer.status_code < 400, (method, path, answer.status_code, answer.text)
    return None if answer.status_code == 204 else answer.json()


class Session:
    """A browser tab on the dashboard that records every request and script error."""

    def __init__(
        self,
        browser: Any,
        server: ServerProcess,
        out: Path,
        viewport: dict[str, int],
        signed_in: bool,
    ) -> None:
        self.base = server.url
        self.out = out
        self.context = browser.new_context(viewport=viewport)
        if signed_in:
            # As if the user had signed in in this tab: the key is in sessionStorage.
            self.context.add_init_script(
                f"sessionStorage.setItem('headway.apiKey', {json.dumps(KEY)});"
            )
        self.page = self.context.new_page()
        self.page.set_default_timeout(UI_TIMEOUT_MS)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.shots: list[Path] = []

    def open(self, fragment: str) -> None:
        """Load the dashboard at ``#<fragment>``."""
        self.page.goto(f"{self.base}/#{fragment}")

    def go(self, fragment: str) -> None:
        """Follow an in-page link to ``#<fragment>`` (no page load)."""
        self.page.evaluate("(f) => { location.hash = f; }", fragment)

    def shot(self, name: str) -> Path:
        """Save a full-page screenshot in the test's folder."""
        path = self.out / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    def close(self) -> None:
        self.context.close()
        foreign = [u for u in self.requests if not u.startswith(self.base + "/")]
        assert not foreign, f"requests to other origins: {foreign}"
        assert not self.errors, f"script errors: {self.errors}"
        assert self.shots and all(p.stat().st_size > 0 for p in self.shots)


@contextmanager
def session(
    browser: Any,
    server: ServerProcess,
    out: Path,
    width: int = 1280,
    height: int = 860,
    signed_in: bool = True,
) -> Iterator[Session]:
    tab = Session(browser, server, out, {"width": width, "height": height}, signed_in)
    try:
        yield tab
    except BaseException:
        # What the page looked like when the test failed.
        try:
            tab.page.screenshot(path=str(out / "failure.png"), full_page=True)
        except Exception:
            pass
        tab.context.close()
        raise
    tab.close()


FLOWS = textwrap.dedent(
    """
    import sys

    from headway import flow, get_run_logger, task
    from headway.concurrency.sync import concurrency


    @task
    def use_db(i: int) -> int:
        get_run_logger().info("task %d asks for db", i)
        with concurrency("db", timeout_seconds=60):
            get_run_logger().info("task %d got db", i)
        return i


    @flow(name="holder")
    def holder() -> None:
        with concurrency("db", timeout_seconds=60):
            print("HELD", flush=True)
            sys.stdin.readline()


    @flow(name="waiter")
    def waiter(i: int) -> int:
        return use_db(i)


    if __name__ == "__main__":
        if sys.argv[1] == "holder":
            holder()
        else:
            waiter(int(sys.argv[2]))
    """
)


def run_named(server: ServerProcess, flow_name: str, **parameters: Any) -> dict[str, Any]:
    runs = call(server, "GET", f"/flow_runs?flow_name={flow_name}&limit=50")
    found = [r for r in runs if all(r["parameters"].get(k) == v for k, v in parameters.items())]
    assert len(found) == 1, runs
    run: dict[str, Any] = found[0]
    return run


def test_limit_created_in_the_ui_shows_holder_waiters_and_their_release(
    browser: Any, server: ServerProcess, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    script = tmp_path / "flows.py"
    script.write_text(FLOWS)
    procs: list[subprocess.Popen[str]] = []
    with session(browser, server, tmp_path) as tab:
        page = tab.page
        tab.open("/limits")
        expect(page.locator("#limits")).to_have_attribute("data-loaded", "true")
        expect(page.locator('[data-limit="db"]')).to_have_count(0)

        # Create the limit in the UI.
        page.click("#new-limit")
        dialog = page.locator("#dialog")
        dialog.locator('input[name="name"]').fill("db")
        dialog.locator('input[name="limit"]').fill("1")
        dialog.get_by_role("button", name="Create").click()
        expect(dialog).to_be_hidden()
        card = page.locator('[data-limit="db"]')
        expect(card.locator(".usage")).to_have_text("0 / 1")
        created = call(server, "GET", "/limits/db")
        assert (created["limit"], created["active"]) == (1, True)

        # The same name again: the API's own error is shown, the dialog stays open.
        page.click("#new-limit")
        dialog.locator('input[name="name"]').fill("db")
        dialog.get_by_role("button", name="Create").click()
        expect(dialog.locator(".form-error")).to_contain_text("already exists")
        tab.shot("limit-exists-error")
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_be_hidden()

        # Another process holds the slot (from inside a flow run).
        env = {**os.environ, "HEADWAY_API_URL": server.url, "HEADWAY_API_KEY": KEY}
        holder = subprocess.Popen(
            [sys.executable, str(script), "holder"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(holder)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "HELD"
            holder_run = run_named(server, "holder")
            expect(card.locator(".usage")).to_have_text("1 / 1")
            expect(card.locator("table.holders tbody")).to_contain_text(holder_run["name"])

            # Two runs wait for it, shown in the order the slot engine will grant them.
            for i in (1, 2):
                procs.append(
                    subprocess.Popen([sys.executable, str(script), "waiter", str(i)], env=env)
                )
            waiter_rows = card.locator("table.waiters tbody tr")
            expect(waiter_rows.locator("td:first-child")).to_have_text(["1", "2"])
            for row in waiter_rows.all():  # named once their task runs are recorded
                expect(row).to_contain_text("task use_db")
            queue = call(server, "GET", "/limits/db?detail=true")["waiters"]
            # Each waiter is the task of a waiter run: the row names the task, links the run.
            in_order = [
                call(server, "GET", f"/flow_runs/{task['flow_run_id']}")
                for task in (call(server, "GET", f"/task_runs/{w['holder']['id']}") for w in queue)
            ]
            for row, run in zip(waiter_rows.all(), in_order, strict=True):
                expect(row.locator("a")).to_have_attribute("href", f"#/runs/{run['id']}")
            first, second = in_order
            tab.shot("limit-held-with-waiters")

            # The runs list shows them waiting, with the holder named.
            tab.go("/runs")
            for run in (first, second):
                row = page.locator(f'tr[data-run-id="{run["id"]}"]')
                expect(row).to_have_class("is-waiting")
                expect(row).to_contain_text("waiting for db")
                expect(row).to_contain_text(f"held by run {holder_run['name']}")
            expect(page.locator(".summary")).to_contain_text("2 waiting for a slot")
            tab.shot("runs-waiting")

            # The second run's "why" panel: the limit, its place, who holds it.
            tab.go(f"/runs/{second['id']}")
            why = page.locator("#why")
            expect(why.locator(".why-lead")).to_have_text(
                "1 task run(s) of this flow run wait for slots (below)."
            )
            expect(why).to_contain_text("Waiting for 1 slot(s) of db")
            expect(why).to_contain_text("Position 2 in the queue (1 ahead, 2 waiting in all)")
            expect(why).to_contain_text(f"held by run {holder_run['name']}")
            # The same words as `headway why` (the server's explanation of the run).
            own = call(server, "GET", f"/explain/runs/{second['id']}")
            expect(why.locator(".why-summary").first).to_have_text(own["summary"])
            tab.shot("run-why-waiting")

            # Release while the runs list is showing: it updates without a reload.
            tab.go("/runs")
            expect(page.locator(f'tr[data-run-id="{first["id"]}"]')).to_have_class("is-waiting")
            page.evaluate("window.__sameDocument = true")
            assert holder.stdin is not None
            holder.stdin.write("\n")
            holder.stdin.flush()
            for proc in procs:
                assert proc.wait(60) == 0
            ours = [
                page.locator(f'tr[data-run-id="{run["id"]}"]')
                for run in (holder_run, first, second)
            ]
            for row in ours:
                expect(row).to_have_attribute("data-state", "COMPLETED")
            expect(page.locator("tr.is-waiting")).to_have_count(0)
            assert page.evaluate("window.__sameDocument") is True
            tab.shot("runs-completed")
            # The state filter asks the server for runs in that state only.
            page.select_option('select[name="state"]', "RUNNING")
            for row in ours:
                expect(row).to_have_count(0)
            page.select_option('select[name="state"]', "COMPLETED")
            for row in ours:
                expect(row).to_have_count(1)
            expect(page.locator('tbody tr[data-state="RUNNING"]')).to_have_count(0)
            assert "state=COMPLETED" in page.evaluate("location.hash")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)

        final = call(server, "GET", "/limits/db?detail=true")
        assert final["holders"] == [] and final["waiters"] == []
        tab.go("/limits")
        expect(card.locator(".usage")).to_have_text("0 / 1")
        expect(card.locator(".gauge-text")).to_contain_text("3 granted")

        # The run page of a finished waiter: states, its task as a bar, its logs.
        tab.go(f"/runs/{second['id']}")
        expect(page.locator("#run-name")).to_have_text(second["name"])
        why = page.locator("#why")
        expect(why).to_contain_text(f"flow run {second['name']} ended COMPLETED")
        # Its task waited for db: the panel says for how long.
        expect(why.locator(".why-task")).to_contain_text("Waited")
        expect(why.locator(".why-task a", has_text="db")).to_have_count(1)
        expect(page.locator("#timeline tbody tr")).to_have_count(
            len(call(server, "GET", f"/runs/{second['id']}/states"))
        )
        gantt = page.locator("#task-runs .gantt-row")
        expect(gantt).to_have_count(1)
        expect(gantt.first).to_contain_text("use_db")
        expect(gantt.first.locator(".badge")).to_have_text("COMPLETED")
        number = second["parameters"]["i"]
        expect(page.locator("#logs")).to_contain_text(f"task {number} got db")
        expect(page.locator(".json")).to_have_text(json.dumps({"i": number}, indent=2))
        tab.shot("run-detail-completed")

        # Edit, disable, enable and delete the limit (after a confirmation).
        tab.go("/limits")
        dialog = page.locator("#dialog")
        card.get_by_role("button", name="Edit").click()
        dialog.locator('input[name="limit"]').fill("3")
        dialog.get_by_role("button", name="Save").click()
        expect(card.locator(".usage")).to_have_text("0 / 3")
        card.get_by_role("button", name="Disable").click()
        expect(card.locator(".badge.paused")).to_have_text("disabled")
        assert call(server, "GET", "/limits/db")["active"] is False
        card.get_by_role("button", name="Enable").click()
        expect(card.locator(".badge.paused")).to_have_count(0)
        after = call(server, "GET", "/limits/db")
        assert (after["limit"], after["active"], after["grants"]) == (3, True, 3)
        card.get_by_role("button", name="Delete").click()
        expect(dialog).to_contain_text("Delete limit db?")
        dialog.get_by_role("button", name="Delete").click()
        expect(card).to_have_count(0)
        gone = httpx.get(
            f"{server.url}/api/v1/limits/db", headers={"Authorization": f"Bearer {KEY}"}
        )
        assert gone.status_code == 404


def test_the_dashboard_changes_things_on_a_server_without_a_key(
    browser: Any, tmp_path: Path
) -> None:
    # Without a key the server refuses any change that is not application/json
    # (a cross-site form could send it): the page's own calls must all say JSON,
    # those without a body (DELETE) included.
    from playwright.sync_api import expect

    with (
        live_server(tmp_path, api_key=None) as keyless,
        session(browser, keyless, tmp_path, signed_in=False) as tab,
    ):
        page = tab.page
        tab.open("/limits")
        expect(page.locator("#limits")).to_have_attribute("data-loaded", "true")
        page.click("#new-limit")
        dialog = page.locator("#dialog")
        dialog.locator('input[name="name"]').fill("db")
        dialog.locator('input[name="limit"]').fill("2")
        dialog.get_by_role("button", name="Create").click()
        expect(dialog).to_be_hidden()
        card = page.locator('[data-limit="db"]')
        expect(card.locator(".usage")).to_have_text("0 / 2")
        card.get_by_role("button", name="Disable").click()
        expect(card.locator(".badge.paused")).to_have_text("disabled")
        assert httpx.get(f"{keyless.url}/api/v1/limits/db").json()["active"] is False
        tab.shot("keyless-limit-disabled")
        card.get_by_role("button", name="Delete").click()
        dialog.get_by_role("button", name="Delete").click()
        expect(card).to_have_count(0)
        assert httpx.get(f"{keyless.url}/api/v1/limits/db").status_code == 404


def test_a_deployment_run_waiting_for_its_limit_names_the_run_holding_it(
    browser: Any, server: ServerProcess, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    call(server, "POST", "/work_pools", {"name": "claims"})
    spec = {"flow_name": "etl", "name": "hourly", "work_pool": "claims", "concurrency_limit": 1}
    call(server, "POST", "/deployments", spec)
    first = call(server, "POST", "/deployments/etl/hourly/runs", {})
    second = call(server, "POST", "/deployments/etl/hourly/runs", {})
    # A worker (here: plain API calls) claims both; the limit lets one start.
    worker = call(server, "POST", "/workers", {"pool": "claims", "name": "api-worker"})
    claim = f"/workers/{worker['id']}/claim"
    claimed = call(server, "POST", claim, {"pool": "claims", "limit": 2})
    assert [c["run"]["id"] for c in claimed] == [first["id"]]

    with session(browser, server, tmp_path) as tab:
        page = tab.page
        tab.open("/runs?deployment=etl/hourly")
        row = page.locator(f'tr[data-run-id="{second["id"]}"]')
        expect(row.locator(".badge")).to_have_text("AwaitingConcurrencySlot")
        expect(row).to_contain_text("waiting for deployment:etl/hourly (#1 in queue)")
        expect(row).to_contain_text(f"held by run {first['name']}")
        expect(page.locator(f'tr[data-run-id="{first["id"]}"]')).to_have_attribute(
            "data-state", "PENDING"
        )
        tab.shot("deployment-run-waiting")

        tab.go(f"/runs/{second['id']}")
        why = page.locator("#why")
        own = call(server, "GET", f"/explain/runs/{second['id']}")
        expect(why.locator(".why-summary")).to_have_text(own["summary"])
        expect(why).to_contain_text(f"held by run {first['name']}")
        tab.shot("deployment-run-why")

        # The first run ends: its slot frees and the next claim starts the second.
        for state in ("RUNNING", "COMPLETED"):
            call(server, "POST", f"/flow_runs/{first['id']}/state", {"state": {"type": state}})
        claimed = call(server, "POST", claim, {"pool": "claims", "limit": 2})
        assert [c["run"]["id"] for c in claimed] == [second["id"]]
        tab.go("/runs?deployment=etl/hourly")
        expect(row).to_have_attribute("data-state", "PENDING")
        expect(row).not_to_have_class("is-waiting")
        expect(page.locator(f'tr[data-run-id="{first["id"]}"]')).to_have_attribute(
            "data-state", "COMPLETED"
        )
        tab.shot("deployment-run-started")
        for state in ("RUNNING", "COMPLETED"):
            call(server, "POST", f"/flow_runs/{second['id']}/state", {"state": {"type": state}})


def test_edit_a_work_pool_and_queue_limit(
    browser: Any, server: ServerProcess, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    with session(browser, server, tmp_path) as tab:
        call(server, "POST", "/work_pools", {"name": "etl", "concurrency_limit": 2})
        call(server, "POST", "/work_pools/etl/queues", {"name": "urgent", "priority": 5})
        worker = {"pool": "etl", "name": "worker-a", "pid": 4242, "host": "box-1"}
        call(server, "POST", "/workers", worker)
        page = tab.page
        tab.open("/pools")
        card = page.locator('[data-pool="etl"]')
        expect(card.locator(".pool-limit-value")).to_have_text("2")
        expect(card.locator('tr[data-queue="urgent"]')).to_contain_text("unlimited")
        worker_row = card.locator('tr[data-worker="worker-a"]')
        expect(worker_row).to_contain_text("pid 4242 on box-1")
        expect(worker_row).to_contain_text("online")
        expect(worker_row.locator(".relative")).to_contain_text("ago")

        dialog = page.locator("#dialog")
        card.locator(".card-actions").get_by_role("button", name="Edit limit").click()
        limit_input = dialog.locator('input[name="limit"]')
        expect(limit_input).to_have_value("2")
        # Invalid input is refused by the API, and its message shown (0 is a
        # limit: no runs start).
        limit_input.fill("-1")
        dialog.get_by_role("button", name="Save").click()
        expect(dialog.locator(".form-error")).to_contain_text("at least 0")
        tab.shot("pool-limit-error")
        assert call(server, "GET", "/work_pools/etl")["concurrency_limit"] == 2

        limit_input.fill("5")
        dialog.get_by_role("button", name="Save").click()
        expect(dialog).to_be_hidden()
        expect(card.locator(".pool-limit-value")).to_have_text("5")
        assert call(server, "GET", "/work_pools/etl")["concurrency_limit"] == 5

        queue_row = card.locator('tr[data-queue="urgent"]')
        queue_row.get_by_role("button", name="Edit limit").click()
        limit_input.fill("3")
        dialog.get_by_role("button", name="Save").click()
        expect(queue_row.locator(".queue-limit")).to_have_text("3")
        assert call(server, "GET", "/work_pools/etl/queues/urgent")["concurrency_limit"] == 3

        # An empty limit clears it: the pool is unlimited again.
        card.locator(".card-actions").get_by_role("button", name="Edit limit").click()
        limit_input.fill("")
        dialog.get_by_role("button", name="Save").click()
        expect(card.locator(".pool-limit-value")).to_have_text("unlimited")
        assert call(server, "GET", "/work_pools/etl")["concurrency_limit"] is None

        card.locator(".card-actions").get_by_role("button", name="Pause").click()
        expect(card.locator(".card-head .paused")).to_have_text("paused")
        assert call(server, "GET", "/work_pools/etl")["paused"] is True
        tab.shot("pools")


def test_the_api_key_gates_every_data_call(
    browser: Any, server: ServerProcess, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    key = KEY
    with session(browser, server, tmp_path, signed_in=False) as tab:
        call(server, "POST", "/limits", {"name": "secret-limit", "limit": 4})
        statuses: list[tuple[str, int]] = []
        tab.page.on(
            "response",
            lambda r: statuses.append((r.url, r.status)) if "/api/v1/" in r.url else None,
        )
        page = tab.page
        with page.expect_response(lambda r: "/api/v1/" in r.url) as first_call:
            tab.open("/limits")
        assert first_call.value.status == 401
        login = page.locator("#login")
        expect(login).to_be_visible()
        assert page.locator("#limits").count() == 0
        expect(page.locator("body")).not_to_contain_text("secret-limit")
        # The page loaded without the key; its data call was refused.
        assert statuses and all(status == 401 for _, status in statuses)
        tab.shot("login")

        login.locator('input[name="api-key"]').fill("wrong")
        login.get_by_role("button", name="Sign in").click()
        expect(login.locator(".form-error")).to_contain_text("missing or wrong API key")
        assert page.evaluate("sessionStorage.getItem('headway.apiKey')") is None

        login.locator('input[name="api-key"]').fill(key)
        login.get_by_role("button", name="Sign in").click()
        expect(page.locator('[data-limit="secret-limit"] .usage')).to_have_text("0 / 4")
        assert page.evaluate("sessionStorage.getItem('headway.apiKey')") == key
        tab.shot("signed-in")

        # The key lasts for the tab's session: a reload stays signed in.
        page.reload()
        expect(page.locator('[data-limit="secret-limit"]')).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        expect(page.locator("#login")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('headway.apiKey')") is None

        # The page and its assets are open; the API is not.
        assert httpx.get(server.url + "/").status_code == 200
        assert httpx.get(server.url + "/ui/app.js").status_code == 200
        assert httpx.get(server.url + "/api/v1/limits").status_code == 401


def test_deployments_schedules_pause_and_run_now_also_on_a_phone(
    browser: Any, server: ServerProcess, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    with session(browser, server, tmp_path, 390, 844) as tab:
        call(server, "POST", "/work_pools", {"name": "reports"})
        spec = {
            "flow_name": "report",
            "name": "nightly",
            "work_pool": "reports",
            "parameters": {"region": "eu", "days": 7},
            "schedules": [{"interval": 600}],
            "concurrency_limit": 1,
            "collision_strategy": "ENQUEUE",
            "tags": ["reports"],
        }
        call(server, "POST", "/deployments", spec)
        page = tab.page
        tab.open("/deployments")
        card = page.locator('[data-deployment="report/nightly"]')
        expect(card).to_contain_text("every 10 min 00 s (UTC)")
        expect(card).to_contain_text("Limit 1 · strategy ENQUEUE")
        policy = call(server, "GET", "/explain/deployments/report/nightly")
        expect(card.locator(".on-collision")).to_have_text(policy["on_collision"])
        expect(card.locator(".layers li")).to_have_count(len(policy["layers"]))
        scheduled = call(server, "GET", "/flow_runs?deployment=report/nightly&state=SCHEDULED")
        assert scheduled, "the scheduler creates the next runs ahead"
        expect(card.locator("dd ul.plain li a")).not_to_have_count(0)
        # Nothing sticks out sideways on a phone.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        tab.shot("deployments-phone")

        card.get_by_role("button", name="Pause").click()
        expect(card.locator(".badge.paused")).to_have_text("paused")
        assert call(server, "GET", "/deployments/report/nightly")["paused"] is True
        card.get_by_role("button", name="Resume").click()
        expect(card.locator(".badge.active")).to_have_text("active")
        assert call(server, "GET", "/deployments/report/nightly")["paused"] is False

        # Change its limit and collision strategy from the card.
        dialog = page.locator("#dialog")
        card.get_by_role("button", name="Edit concurrency").click()
        expect(dialog.locator('input[name="limit"]')).to_have_value("1")
        dialog.locator('input[name="limit"]').fill("2")
        dialog.locator('select[name="collision_strategy"]').select_option("CANCEL_NEW")
        dialog.get_by_role("button", name="Save").click()
        expect(card).to_contain_text("Limit 2 · strategy CANCEL_NEW")
        changed = call(server, "GET", "/deployments/report/nightly")
        assert (changed["concurrency_limit"], changed["collision_strategy"]) == (2, "CANCEL_NEW")
        expect(card.locator(".on-collision")).to_contain_text("CANCEL_NEW")

        card.get_by_role("button", name="Run now").click()
        params = dialog.locator('textarea[name="parameters"]')
        assert json.loads(params.input_value()) == {"region": "eu", "days": 7}
        params.fill("{not json")
        dialog.get_by_role("button", name="Run").click()
        expect(dialog.locator(".form-error")).to_contain_text("not valid JSON")
        params.fill('{"days": 30}')
        dialog.get_by_role("button", name="Run").click()
        expect(page.locator("#run-name")).to_be_visible()
        run_id = page.evaluate("location.hash").removeprefix("#/runs/")
        run = call(server, "GET", f"/flow_runs/{run_id}")
        assert run["deployment"] == "report/nightly"
        assert run["parameters"] == {"region": "eu", "days": 30}
        expect(page.locator(".json")).to_have_text(json.dumps(run["parameters"], indent=2))
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        tab.shot("run-now-phone")

        # Cancel it from its page, after a confirmation.
        page.locator(".head-actions").get_by_role("button", name="Cancel run").click()
        dialog.get_by_role("button", name="Cancel run").click()
        expect(page.locator(".head-actions .badge")).to_have_text("CANCELLED")
        assert call(server, "GET", f"/flow_runs/{run_id}")["state"]["type"] == "CANCELLED"

        tab.go("/runs?deployment=report/nightly")
        expect(page.locator(f'tr[data-run-id="{run_id}"]')).to_be_visible()
        tab.go("/runs?tag=reports")  # the deployment's tag, carried by its runs
        expect(page.locator(f'tr[data-run-id="{run_id}"]')).to_be_visible()
        assert page.locator('input[name="tag"]').input_value() == "reports"
        tab.go("/runs?tag=no-such-tag")
        expect(page.locator(".summary")).to_contain_text("0 run(s)")
        tab.shot("runs-phone")


# -- the files themselves -------------------------------------------------------------
# A module import: ``from "./js/api.js"`` (resolved against the importing file).
IMPORT = re.compile(r"""\bfrom\s+["']([^"']+)["']""")


def test_page_and_every_asset_it_names_are_served(server: ServerProcess) -> None:
    # No key: the page and its files hold no data and are open (the API is not).
    page = httpx.get(server.url + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert VERSION_MARK not in page.text

    named = re.findall(r'(?:src|href)="(/ui/[^"?]+)(?:\?v=([0-9a-f]+))?"', page.text)
    assert {path for path, _ in named} >= {"/ui/app.js", "/ui/app.css", "/ui/favicon.svg"}
    assert len({version for _, version in named}) == 1  # one release, one version
    # Every file the page names, and every module those import, is served.
    pending = [path for path, _ in named]
    served: set[str] = set()
    while pending:
        path = pending.pop()
        if path in served:
            continue
        served.add(path)
        asset = httpx.get(server.url + path)
        assert asset.status_code == 200, path
        suffix = "." + path.rpartition(".")[2]
        assert asset.headers["content-type"] == CONTENT_TYPES[suffix]
        # A browser that has it already is answered 304, without the body.
        again = httpx.get(server.url + path, headers={"If-None-Match": asset.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        if suffix == ".js":
            base = path.rpartition("/")[0]
            for target in IMPORT.findall(asset.text):
                assert target.startswith("."), f"{path} imports {target!r}"
                pending.append(posixpath.normpath(f"{base}/{target}"))
    assert "/ui/js/views/run.js" in served  # reached through the imports


@pytest.mark.parametrize(
    "path", ["/ui/missing.js", "/ui/../settings.py", "/ui/", "/ui/%2e%2e/app.py"]
)
def test_only_shipped_files_are_served(server: ServerProcess, path: str) -> None:
    answer = httpx.get(server.url + path)
    # Under /ui/ an unknown file is 404; a path that leaves /ui/ needs the key like any other.
    assert answer.status_code == (404 if answer.url.path.startswith("/ui/") else 401)
    assert answer.json()["error"] in {"ObjectNotFound", "NotFound", "Unauthorized"}
