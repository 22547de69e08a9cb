"""API fuzzing, long run: tests/contract/test_api_fuzz.py with many more requests.

Runs the fuzz test (schemathesis-generated valid and invalid requests against
every operation of the server's OpenAPI document; no 5xx, every answer as the
spec declares) with ``--examples`` requests per operation, on a SQLite store
and on PostgreSQL (a private cluster it starts: needs root). Prints, per
store, the requests sent and whether every check held.

    python benchmarks/bench_reliability_fuzz.py --examples 100
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_server_setup import store  # noqa: E402

TEST = HERE.parent / "tests" / "contract" / "test_api_fuzz.py"


def fuzz(kind: str, examples: int) -> tuple[int, int, str, float]:
    """(exit code, requests sent, pytest's last line, seconds) for one store."""
    cluster = None
    if kind == "postgres":
        from bench_reliability_faults import PrivateCluster

        from headway.server.runner import free_port

        # A cluster of its own: the server's thread pool may open many connections.
        cluster = PrivateCluster(free_port()).start()
    with store("sqlite") as env, tempfile.TemporaryDirectory() as work:
        count = Path(work) / "count"
        env = {**env, "HEADWAY_FUZZ_EXAMPLES": str(examples), "HEADWAY_FUZZ_COUNT_FILE": str(count)}
        if cluster is not None:
            env["HEADWAY_FUZZ_DATABASE_URL"] = cluster.url
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TEST)],
            env=env,
            capture_output=True,
            text=True,
            cwd=HERE.parent,
            check=False,
        )
        seconds = time.perf_counter() - started
        sent = sum(int(x) for x in count.read_text().split()) if count.exists() else 0
    if cluster is not None:
        cluster.stop()
    lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-6000:])
    return done.returncode, sent, lines[-1] if lines else "", seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="requests per operation")
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args()
    kinds = ("sqlite", "postgres") if args.store == "both" else (args.store,)
    failed = 0
    for kind in kinds:
        code, sent, last, seconds = fuzz(kind, args.examples)
        failed += code != 0
        verdict = "no 5xx, every answer as the spec says" if code == 0 else "FAILED"
        print(
            f"{kind}: {sent} generated requests ({args.examples} per operation) in"
            f" {seconds:.0f} s; {verdict} ({last})"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.pop("HEADWAY_API_URL", None)
    sys.exit(main())
