"""A missing or wrong API key is refused on every route, and no key is ever logged.

- Every route the server has (every API operation, ``/metrics``, ``/docs``,
  ``/openapi.json``), with every method it answers, called with no key, a wrong
  key, the key under another scheme, a prefix or an extension of the key, or the
  key in the query string: 401 with the JSON error body. Only ``/health`` and the
  dashboard's page and static assets (``/``, ``/ui/...``, which hold no data)
  are open; the dashboard's data comes from the API routes, so it is refused too.
- A real server process at debug level with its access log on, used with the
  right key and with wrong ones: neither key appears in its log, nor in the
  client's own log records, nor in ``headway config``.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import Mount, Route

from headway.cli import main as cli_main
from headway.client.http import HttpClient
from headway.core.states import Completed, Running
from headway.exceptions import ConfigurationError
from headway.server.runner import ServerProcess, ServerThread
from headway.settings import get_settings

KEY = "k3y-" + secrets.token_urlsafe(24)
WRONG = "wr0ng-" + secrets.token_urlsafe(24)
#: Open without the key: liveness, and the dashboard's page and assets (no data in them).
OPEN = {"/health", "/"}


@pytest.fixture
def server(headway_home: Path) -> Iterator[ServerThread]:
    settings = get_settings({"HEADWAY_HOME": str(headway_home), "HEADWAY_API_KEY": KEY})
    with ServerThread(settings) as running:
        yield running


def every_route(app: object) -> list[tuple[str, str]]:
    """(method, concrete path) for every route of the app, path parameters filled in."""

    def walk(routes: list[object], prefix: str) -> Iterator[tuple[str, str]]:
        for route in routes:
            if hasattr(route, "original_router"):  # an included router
                inner = route.original_router.routes  # type: ignore[attr-defined]
                yield from walk(inner, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
            elif isinstance(route, Route):
                path = re.sub(r"\{[^}]+\}", "x", prefix + route.path)
                for method in sorted(route.methods or {"GET"}):
                    if method != "HEAD":
                        yield method, path
            else:
                assert isinstance(route, Mount), route

    return list(walk(app.routes, ""))  # type: ignore[attr-defined]


def refused(answer: httpx.Response) -> bool:
    return (
        answer.status_code == 401
        and answer.headers.get("www-authenticate") == "Bearer"
        and answer.json().get("error") == "Unauthorized"
    )


def test_every_route_but_health_and_the_page_refuses_a_missing_or_wrong_key(
    server: ServerThread,
) -> None:
    routes = every_route(server.app)
    paths = {path for _, path in routes}
    # The sweep covers the API, the metrics, the docs and the dashboard's data.
    assert {"/api/v1/flow_runs", "/api/v1/limits", "/metrics", "/openapi.json", "/docs"} <= paths
    assert len(routes) >= 50
    basic = base64.b64encode(f"user:{KEY}".encode()).decode()
    wrong_ways = [
        ({}, {}),
        ({"Authorization": f"Bearer {WRONG}"}, {}),
        ({"Authorization": KEY}, {}),
        ({"Authorization": f"Basic {basic}"}, {}),
        ({"Authorization": f"Bearer {KEY[:-1]}"}, {}),
        ({"Authorization": f"Bearer {KEY}x"}, {}),
        ({"Authorization": "Bearer"}, {}),
        ({"X-API-Key": KEY}, {}),
        ({}, {"api_key": KEY}),
    ]
    problems: list[str] = []
    tried = 0
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for method, path in routes:
            for headers, params in wrong_ways:
                answer = http.request(method, path, headers=headers, params=params, json={})
                tried += 1
                if path in OPEN or path.startswith("/ui/"):
                    if answer.status_code == 401:
                        problems.append(f"{method} {path}: open route refused")
                elif not refused(answer):
                    problems.append(f"{method} {path} {headers} {params}: {answer.status_code}")
                if KEY in answer.text or WRONG in answer.text:
                    problems.append(f"{method} {path}: the answer repeats a key")
        # Not blind: with the key, the same routes are let through (to their own answer).
        good = {"Authorization": f"Bearer {KEY}"}
        for method, path in routes:
            if method == "GET":
                answer = http.request(method, path, headers=good)
                if answer.status_code == 401:
                    problems.append(f"{method} {path}: refused with the right key")
    assert not problems, "\n".join(problems)
    assert tried >= 450
    for path in OPEN:
        assert httpx.get(server.url + path).status_code == 200


def test_the_python_client_with_a_wrong_key_is_told_so(server: ServerThread) -> None:
    env = {"HEADWAY_HOME": str(server.settings.home), "HEADWAY_API_URL": server.url}
    for key in (None, WRONG):
        settings = get_settings({**env, **({"HEADWAY_API_KEY": key} if key else {})})
        client = HttpClient(settings, retry_seconds=0.5)
        with pytest.raises(ConfigurationError, match="HEADWAY_API_KEY") as caught:
            client.list_limits()
        assert KEY not in str(caught.value) and WRONG not in str(caught.value)
        client.close()


def test_keys_are_never_logged(
    headway_home: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log_path = tmp_path / "server.log"
    env = {**os.environ, "HEADWAY_API_KEY": KEY, "HEADWAY_LOGGING_LEVEL": "DEBUG"}
    with ServerProcess(env, log_path=log_path, extra_args=("--access-log",)) as server:
        # Refused calls with a wrong key, in the header and in the query string
        # (sent before the client's own log is captured below).
        httpx.get(server.url + "/api/v1/limits", headers={"Authorization": f"Bearer {WRONG}"})
        httpx.get(server.url + "/api/v1/limits", params={"api_key": WRONG})
        httpx.get(server.url + "/api/v1/flow_runs", params={"token": KEY})
        httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {WRONG}"})
        caplog.set_level(logging.DEBUG)
        client_env = {"HEADWAY_HOME": str(headway_home), "HEADWAY_API_URL": server.url}
        client = HttpClient(get_settings({**client_env, "HEADWAY_API_KEY": KEY}))
        # Ordinary work with the right key...
        client.create_limit("db", 1)
        grant = client.acquire_slots(["db"], 1)
        client.release_slots(grant.lease_id)  # type: ignore[union-attr]
        run_id = str(uuid.uuid4())
        client.create_flow_run(id=run_id, name="r", flow_name="f", state=Running())
        client.set_flow_run_state(run_id, Completed())
        client.list_flow_runs()
        # ...and with a wrong one.
        wrong = HttpClient(get_settings({**client_env, "HEADWAY_API_KEY": WRONG}))
        with pytest.raises(ConfigurationError):
            wrong.read_limit("db")
        client.close()
        wrong.close()
        # headway config shows that a key is set, not the key.
        monkeypatch.setenv("HEADWAY_API_KEY", KEY)
        assert cli_main(["config"]) == 0
        shown = capsys.readouterr()
    log = log_path.read_text(errors="replace")
    # Not blind: the log holds the access lines of the calls just made.
    assert "/api/v1/limits" in log and "401" in log and "/api/v1/flow_runs" in log
    assert KEY not in log and WRONG not in log
    assert "HEADWAY_API_KEY" in shown.out and KEY not in shown.out + shown.err
    records = [r.getMessage() + str(r.__dict__) for r in caplog.records]
    assert records, "no client log records captured"
    assert not [r for r in records if KEY in r or WRONG in r]
