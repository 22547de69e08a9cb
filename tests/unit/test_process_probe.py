"""The pid liveness probe never raises on an odd pid: a sweep depends on it."""

from __future__ import annotations

import os

import pytest

from headway._process import process_start_time


@pytest.mark.parametrize("pid", [2**62, 2**31, 2**64, 0, -1, -(2**40)])
def test_a_pid_no_kernel_hands_out_is_uncertain(pid: int) -> None:
    # Uncertain (LookupError: treated as alive, left to expiry), never OverflowError,
    # and never judged by os.kill's special meanings of 0 and negative pids.
    with pytest.raises(LookupError):
        process_start_time(pid)


def test_this_process_has_a_start_time() -> None:
    start = process_start_time(os.getpid())
    assert start is not None and start > 0
