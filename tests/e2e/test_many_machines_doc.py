"""docs/many-machines.md, sections 1 to 7: every command run as written, in one shell.

The page is a session at one terminal: it exports variables, starts servers,
a Dask cluster and a worker in the background (``&``), runs a deployment on
them, looks at the result and stops everything by job number. So its blocks
run in order in one ``bash``, with this virtualenv's ``bin`` first on ``PATH``
and the python block saved where the page says (``flows/etl.py``). Section 8
("Operating it") is run by test_operations_doc.py.

What the test changes, and nothing else:

- the ports (4200, 4201, 8786) become free ones, and the database ``headway``
  a fresh name, so that runs beside other tests cannot collide;
- ``<run id from the list>`` becomes that id, as a reader would paste it;
- after the servers start, the shell waits until both answer ``/health``, as a
  reader waits for their ``headway server on ...`` line;
- ``pip install`` (section 0) is not run: this environment is the install.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from headway.server.runner import free_port
from helpers.postgres import ADMIN_URL, admin_connection

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py

if os.environ.get("CI") != "true":
    pytest.importorskip("distributed")

DOC = Path(__file__).resolve().parents[2] / "docs" / "many-machines.md"
BIN = Path(sys.executable).parent
_FENCE = re.compile(r"^ *```(\w*)\n(.*?)^ *```", flags=re.S | re.M)

#: Lines of sections 1-7 the test does not run, and why.
NOT_RUN = {'pip install "headway[postgres,dask]"': "this environment is the install"}

RUN_ID = (
    "$(headway flow-run ls --flow etl -n 1 -o json"
    " | python -c 'import json, sys; print(json.load(sys.stdin)[0][\"id\"])')"
)

WAIT_FOR_SERVERS = """python - <<'EOF'
import os
from headway.server.runner import wait_healthy
for var in ("API_1", "API_2"):
    wait_healthy("http://" + os.environ[var], 120)
EOF"""


def page_blocks() -> list[tuple[str, str]]:
    """(language, text) of each fenced block of sections 0 to 7, in order."""
    text = DOC.read_text()
    text = text[text.index("## 0.") : text.index("## 8.")]
    return [(lang, re.sub(r"(?m)^  ", "", body)) for lang, body in _FENCE.findall(text)]


def test_sections_one_to_seven_run_as_written(tmp_path: Path) -> None:
    cluster = urlsplit(ADMIN_URL)
    if (cluster.hostname, cluster.port or 5432) != ("127.0.0.1", 5432):
        pytest.skip("the page's PostgreSQL is postgres@127.0.0.1:5432")
    admin = admin_connection()
    database = f"hw_doc_{secrets.token_hex(4)}"
    ports = {"4200": free_port(), "4201": free_port(), "8786": free_port()}
    work = tmp_path / "host"
    (work / "flows").mkdir(parents=True)
    script: list[str] = ["set -euo pipefail"]
    skipped: list[str] = []
    for lang, body in page_blocks():
        if lang == "python":
            (work / "flows" / "etl.py").write_text(body)
            continue
        if lang != "console":
            continue  # the diagram
        body = body.replace("\\\n", " ")  # continued lines
        for line in body.splitlines():
            command = line.split("  #", 1)[0].strip()
            if not command:
                continue
            if command in NOT_RUN:
                skipped.append(command)
                continue
            for port, free in ports.items():
                command = command.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free}")
            command = command.replace("-U postgres headway", f"-U postgres {database}")
            command = command.replace(":5432/headway", f":5432/{database}")
            command = command.replace("<run id from the list>", RUN_ID)
            script.append(command)
        if "headway server start" in body:
            script.append(WAIT_FOR_SERVERS)
    assert skipped == list(NOT_RUN)
    text = "\n".join(script) + "\n"
    # Every kind of step of the page is there (the test would not notice a block it lost).
    for needed in ("createdb", "headway db upgrade", "headway server start", "dask scheduler",
                   "dask worker", "headway deploy", "headway worker start",
                   "headway deployment run etl/nightly --wait", "headway flow-run logs",
                   "kill %5", "dropdb"):  # fmt: skip
        assert needed in text, needed
    (tmp_path / "page.sh").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEADWAY_", "DASK_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               HEADWAY_HOME=str(tmp_path / "home"))  # fmt: skip
    log = tmp_path / "page.log"
    with open(log, "wb") as out:
        shell = subprocess.Popen(
            ["bash", str(tmp_path / "page.sh")], cwd=work, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        code = shell.wait(420)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        # Whatever the page left running (it stops it all when it succeeds).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()
    output = log.read_text(errors="replace")
    assert code == 0, output[-6000:]
    assert re.search(r"Flow run \S+ is Completed", output), output[-6000:]
    # The flow's twelve parts ran on the Dask workers and logged there.
    assert len(set(re.findall(r"part (\d+) on ", output))) == 12, output[-6000:]
