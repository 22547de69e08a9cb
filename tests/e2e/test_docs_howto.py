"""Every code block of the how-to pages (and the quickstart) runs, as a reader would.

Each page gets a fresh working directory and a fresh ``HEADWAY_HOME``; its
fenced blocks run in order there:

- ``python`` blocks without a title are run with this interpreter in a
  subprocess; a block with ``title="name.py"`` is a file of the page: it is
  saved under that name, and a later block must use it (run ``python
  name.py``, import ``name``, or deploy ``name.py:flow``), so it runs too;
- ``console`` blocks run line by line through a shell with this virtualenv's
  ``bin`` first on ``PATH``, so ``headway ...`` is the real command line; a
  line ending in ``\\`` continues on the next. Only ``headway`` and ``python``
  commands may appear.

Every command must succeed. A block that must not run says so in an HTML
comment on the line before its fence, with a reason:

- ``<!-- docs-test: skip REASON -->`` (e.g. ``headway server start``, which
  blocks): not run, and counted;
- ``<!-- docs-test: background -->``: each line is started in the background
  (a worker, say) and stopped (SIGTERM) when the page's blocks are done.

A fence in any other language, or a marker the test does not know, fails the
test, so no block is left out silently.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py

ROOT = Path(__file__).resolve().parents[2]
HOWTO = ROOT / "docs" / "how-to"
BIN = Path(sys.executable).parent

_FENCE = re.compile(r"^```(?P<lang>[\w-]*)(?P<attrs>[^\n]*)$")
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<kind>[\w-]+)\s*(?P<reason>.*?)\s*-->$")
_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')

# Skipped blocks, by page: a new skip must be added here too, on purpose.
EXPECTED_SKIPS = {
    "serialize-a-deployment.md": 1,  # flow.serve(), which blocks until Ctrl-C
    "quickstart.md": 3,  # make demo / make test, pip install, headway server start
}


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: str
    line: int
    lang: str
    title: str | None
    text: str
    mode: str  # "run", "skip" or "background"
    reason: str = ""


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` with how each is to be run."""
    lines = page.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i].strip())
        if fence is None:
            i += 1
            continue
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        mode, reason = "run", ""
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = _MARKER.match(lines[before].strip()) if before >= 0 else None
        if marker is not None:
            mode, reason = marker["kind"], marker["reason"]
            assert mode in ("skip", "background"), (
                f"{page.name}:{before + 1}: unknown docs-test marker {mode!r}"
            )
            assert mode != "skip" or reason, f"{page.name}:{before + 1}: a skip needs a reason"
        title = _TITLE.search(fence["attrs"])
        blocks.append(
            Block(
                page=page.name,
                line=start + 1,
                lang=fence["lang"],
                title=title["title"] if title else None,
                text="\n".join(body) + "\n",
                mode=mode,
                reason=reason,
            )
        )
    return blocks


def commands_of(block: Block) -> list[str]:
    """The commands of a console block (continuation lines joined, comments kept for bash)."""
    commands: list[str] = []
    pending = ""
    for raw in block.text.splitlines():
        line = raw.rstrip()
        if not line.strip() and not pending:
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        commands.append(pending + line)
        pending = ""
    assert not pending, f"{block.page}:{block.line}: a line continues past the block"
    for command in commands:
        words = shlex.split(command, comments=True)
        while words and _ASSIGNMENT.match(words[0]):
            words.pop(0)  # NAME=value before the command: an environment variable for it
        program = words[0] if words else ""
        assert program in ("headway", "python"), (
            f"{block.page}:{block.line}: only headway and python commands run here, got"
            f" {command!r}; mark the block with <!-- docs-test: skip REASON --> if it must not run"
        )
    return commands


PAGES = [*sorted(HOWTO.glob("*.md")), ROOT / "docs" / "quickstart.md"]


def test_every_howto_block_is_run_or_explicitly_skipped() -> None:
    """No block of any how-to page escapes: each is run, or skipped with a marker and counted."""
    assert PAGES, "no how-to pages found"
    skips: dict[str, int] = {}
    for page in PAGES:
        blocks = blocks_of(page)
        assert any(b.mode == "run" for b in blocks), f"{page.name} has no block that runs"
        for block in blocks:
            assert block.lang in ("python", "console"), (
                f"{page.name}:{block.line}: a ```{block.lang} block cannot be run;"
                " use python or console"
            )
            if block.mode == "background":
                assert block.lang == "console", (
                    f"{page.name}:{block.line}: background is for console"
                )
        skips[page.name] = sum(b.mode == "skip" for b in blocks)
    expected = {page.name: EXPECTED_SKIPS.get(page.name, 0) for page in PAGES}
    assert skips == expected


def _env(home: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("HEADWAY_") and key not in ("PYTHONPATH",)
    }
    env["HEADWAY_HOME"] = str(home)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return env


def _stop(process: subprocess.Popen[bytes], log: Path) -> str | None:
    """Stop a background command with SIGTERM; what went wrong with it, if anything."""
    if process.poll() is not None:
        return (
            f"a background command ended before the page was done ({process.returncode}):\n"
            f"{log.read_text()[-3000:]}"
        )
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return f"a background command did not stop on SIGTERM; its log:\n{log.read_text()[-3000:]}"
    return None


# A page starts a few dozen processes (CLI calls, scripts, a worker and its runs):
# ~12 s of CPU in all for the longest page; 45-100 s of wall time on the 2-core
# machine while other suites load it (load average 10-20).
@pytest.mark.timeout(240)
@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_howto_page_blocks_run(page: Path, tmp_path: Path) -> None:
    """Run the page's blocks in order, in a fresh directory and HEADWAY_HOME."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = _env(tmp_path / "home")
    background: list[tuple[subprocess.Popen[bytes], Path]] = []
    ran = 0
    try:
        blocks = blocks_of(page)
        for n, block in enumerate(blocks):
            where = f"{block.page}:{block.line}"
            if block.mode == "skip":
                continue
            began = time.monotonic()
            if block.lang == "python" and block.title:
                (workdir / block.title).write_text(block.text)
                later = "".join(b.text for b in blocks[n + 1 :])
                stem = Path(block.title).stem
                assert block.title in later or re.search(
                    rf"\bimport {stem}\b|\bfrom {stem}\b", later
                ), f"{where}: no later block uses {block.title}, so it would never run"
                continue
            if block.lang == "python":
                script = workdir / f"block_{n}.py"
                script.write_text(block.text)
                result = subprocess.run(
                    [sys.executable, script.name],
                    cwd=workdir,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert result.returncode == 0, (
                    f"{where}: python block failed ({result.returncode}):\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
                )
                ran += 1
                print(f"{where}: {time.monotonic() - began:.1f} s\n{result.stdout}")
                continue
            for command in commands_of(block):
                if block.mode == "background":
                    log = tmp_path / f"background_{len(background)}.log"
                    with log.open("wb") as out:
                        process = subprocess.Popen(
                            ["bash", "-c", f"exec {command}"],
                            cwd=workdir,
                            env=env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        )
                    background.append((process, log))
                    continue
                result = subprocess.run(
                    ["bash", "-c", command],
                    cwd=workdir,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert result.returncode == 0, (
                    f"{where}: {command!r} failed ({result.returncode}):\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
                )
            ran += 1
            print(f"{where}: {time.monotonic() - began:.1f} s")
    finally:
        began = time.monotonic()
        # Every background command is stopped, even when one of them went wrong.
        problems = [p for p in (_stop(process, log) for process, log in background) if p]
        if background:
            print(f"{page.name}: background commands stopped in {time.monotonic() - began:.1f} s")
        assert not problems, "\n".join(problems)
    assert ran > 0
