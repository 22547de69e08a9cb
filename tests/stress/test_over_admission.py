"""Never over-admitted: a short run of benchmarks/bench_over_admission.py.

Three processes of four threads take 1 or 2 slots of a 3-slot limit, again and
again; an observer outside headway (a counter under ``flock``) sums the slots
in use and counts every moment the sum exceeded the limit. The long run
(>= 10,000 acquisitions) is the benchmark itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_over_admission.py"


def test_processes_and_threads_never_exceed_the_limit(headway_home: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--processes",
            "3",
            "--threads",
            "4",
            "--acquisitions",
            "480",
            "--limit",
            "3",
            "--hold",
            "0.002",
            "--home",
            str(headway_home),
            "--max-seconds",
            "100",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=150,
        env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["worker_exit_codes"] == 0
    assert seen["acquisitions"] == seen["expected"] == 480
    assert seen["violations"] == 0
    # The limit was really reached (the run exercised contention), never passed.
    assert seen["most_slots_in_use"] == 3
    # Everything was given back: the store agrees with the observer.
    assert seen["grants_recorded"] == 480
    assert seen["slots_in_use_at_end"] == 0
    assert seen["active_slots_at_end"] == 0
    assert seen["holders_at_end"] == 0 and seen["waiters_at_end"] == 0
