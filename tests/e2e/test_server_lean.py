"""The embedded path never pays for the server: no FastAPI, uvicorn, httpx or pydantic."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SERVER_MODULES = ("fastapi", "uvicorn", "httpx", "httpcore", "pydantic", "starlette", "psycopg")


def test_embedded_client_and_cli_import_no_server_dependency() -> None:
    script = f"""
import json, sys, uuid
import headway
from headway.client.base import get_client
from headway.core.states import Running, Completed
import headway.cli.app  # every CLI noun registered, server and db included

client = get_client()
run = client.create_flow_run(id=str(uuid.uuid4()), name="r", flow_name="f", state=Running())
client.set_flow_run_state(run.id, Completed())
print(json.dumps([type(client).__name__] + sorted(
    m for m in sys.modules if m.split(".")[0] in {SERVER_MODULES!r}
)))
"""
    env = {k: v for k, v in os.environ.items() if k != "HEADWAY_API_URL"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["Orchestrator"]


def test_http_client_loads_httpx_but_not_the_server() -> None:
    script = f"""
import json, sys
from headway.client.base import get_client
client = get_client()
print(json.dumps([type(client).__name__] + sorted(
    m.split(".")[0] for m in sys.modules if m.split(".")[0] in {SERVER_MODULES!r}
)))
"""
    env = {**os.environ, "HEADWAY_API_URL": "http://127.0.0.1:9"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded[0] == "HttpClient"
    assert "httpx" in loaded
    assert not {"fastapi", "uvicorn", "starlette", "pydantic"} & set(loaded)
