"""The task engine's pure parts: the in-memory tracker, final states, run ids, the recorder."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest

from headway._engine.recorder import Recorder
from headway._engine.task_call import new_run_id
from headway._engine.tracking import (
    RunState,
    TaskRunTracker,
    cancelled_state,
    final_state,
    state_result,
)
from headway.core.models import LogRecord, TaskRunRecord
from headway.core.states import (
    Completed,
    Failed,
    Paused,
    Pending,
    Running,
    State,
    StateType,
    now,
)
from headway.exceptions import IllegalTransition, RunCancelled, RunFailed

S = StateType


def tracker(client: Any = None) -> TaskRunTracker:
    return TaskRunTracker(new_run_id(), "flow", "t-0", "mod.t", ("a",), client, Pending())


def test_tracker_follows_the_state_machine() -> None:
    t = tracker()
    with pytest.raises(IllegalTransition):
        t.set_state(Paused())  # PENDING -> PAUSED is not allowed
    assert t.set_state(Running()) and t.run_count == 1
    assert t.set_state(Running("Retrying")) and t.run_count == 2  # still counted as a run
    assert t.set_state(Completed())
    assert t.set_state(Failed()) is False  # a finished run keeps its final state
    assert [s.type for s in t.states] == [S.PENDING, S.RUNNING, S.RUNNING, S.COMPLETED]


def test_tracker_keeps_timestamps_strictly_increasing() -> None:
    t = tracker()
    first = t.states[0].timestamp
    t.set_state(Running(timestamp=first))
    t.set_state(Completed(timestamp=first - timedelta(seconds=1)))
    stamps = [s.timestamp for s in t.states]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


def test_take_record_returns_only_new_states_and_unsend_restores_them() -> None:
    t = tracker()
    first = t.take_record()
    assert isinstance(first, TaskRunRecord)
    assert [s.type for s in first.states] == [S.PENDING] and first.tags == ("a",)
    assert t.take_record() is None
    t.set_state(Running())
    t.set_state(Completed())
    second = t.take_record()
    assert second is not None and [s.type for s in second.states] == [S.RUNNING, S.COMPLETED]
    assert second.run_count == 1
    t.unsend(second)
    again = t.take_record()
    assert again is not None and again.states == second.states


def test_final_states_carry_the_outcome() -> None:
    done = final_state(S.COMPLETED, outcome=[1, 2])
    assert isinstance(done, State) and done.name == "Completed" and done.result() == [1, 2]
    error = ValueError("bad")
    failed = final_state(S.FAILED, message="ValueError: bad", error=error)
    with pytest.raises(ValueError, match="bad"):
        failed.result()
    assert failed.result(raise_on_failure=False) is error
    cancelled = cancelled_state("stopped")
    with pytest.raises(RunCancelled, match="stopped"):
        cancelled.result()
    with pytest.raises(RunFailed, match="without a result"):
        RunState(S.CRASHED).result()
    # States read back from a store carry no result: asking for one says why.
    with pytest.raises(RunCancelled, match="user stopped it"):
        state_result(State(S.CANCELLED, message="user stopped it"))
    assert isinstance(state_result(State(S.FAILED), raise_on_failure=False), RunFailed)
    assert repr(done) == "State(Completed)"  # the outcome never shows in the repr


def test_run_ids_are_version_7_uuids_ordered_by_time() -> None:
    ids = [new_run_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:50]:
        parsed = uuid.UUID(value)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122 and str(parsed) == value
    # The first 48 bits are milliseconds: ids of later milliseconds sort after.
    millis = [int(v.replace("-", "")[:12], 16) for v in ids]
    assert millis == sorted(millis)
    assert abs(millis[-1] - now().timestamp() * 1000) < 60_000


class FakeClient:
    """Records what the recorder writes; can fail on demand."""

    def __init__(self) -> None:
        self.records: list[TaskRunRecord] = []
        self.batches: list[list[TaskRunRecord]] = []
        self.logs: list[LogRecord] = []
        self.fail = 0
        self.fail_logs = 0
        self.written = threading.Event()

    def record_task_runs(self, records: list[TaskRunRecord]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("store down")
        self.batches.append(list(records))
        self.records.extend(records)
        self.written.set()

    def write_logs(self, records: list[LogRecord]) -> None:
        if self.fail_logs:
            self.fail_logs -= 1
            raise ConnectionError("store down")
        self.logs.extend(records)


def test_recorder_sends_one_record_per_run_per_batch() -> None:
    client = FakeClient()
    recorder = Recorder()
    t = tracker(client)
    recorder._thread = threading.current_thread()  # no background thread in this test
    recorder.touch(t)
    t.set_state(Running())
    recorder.touch(t)
    t.set_state(Completed())
    recorder.touch(t)
    recorder.flush()
    assert len(client.batches) == 1 and len(client.batches[0]) == 1
    assert [s.type for s in client.records[0].states] == [S.PENDING, S.RUNNING, S.COMPLETED]
    recorder.touch(t)
    recorder.flush()
    assert len(client.batches) == 1  # nothing new: nothing written


def test_recorder_keeps_what_a_failed_write_did_not_store() -> None:
    client = FakeClient()
    client.fail = 2  # the batch, then the record alone: the store is down for now
    client.fail_logs = 1
    recorder = Recorder()
    recorder._thread = threading.current_thread()
    t = tracker(client)
    recorder.touch(t)
    line = LogRecord("flow", None, 20, "INFO", "x", "hello", now())
    recorder.log(client, line)  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        recorder.flush()
    t.set_state(Running())
    recorder.touch(t)
    recorder.flush()
    assert [s.type for s in client.records[0].states] == [S.PENDING, S.RUNNING]
    assert client.logs == [line]  # re-queued by the failed flush, then written once


def test_recorder_writes_in_the_background() -> None:
    client = FakeClient()
    recorder = Recorder()
    t = tracker(client)
    recorder.touch(t)  # starts the thread
    assert client.written.wait(10)
    assert client.records[0].id == t.id


def test_a_record_the_store_refuses_is_dropped_and_never_blocks_the_others(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Picky(FakeClient):
        def record_task_runs(self, records: list[TaskRunRecord]) -> None:
            if any(r.name == "bad" for r in records):
                raise ValueError("value too long for type character varying(200)")
            super().record_task_runs(records)

    client = Picky()
    recorder = Recorder()
    recorder._thread = threading.current_thread()
    good, bad = tracker(client), tracker(client)
    bad.name = "bad"
    recorder.touch(good)
    recorder.touch(bad)
    recorder.flush()  # does not raise: the store works, it refuses one record
    assert [r.id for r in client.records] == [good.id]
    assert f"dropped the record of task run {bad.id}" in capsys.readouterr().err
    later = tracker(client)
    recorder.touch(later)
    recorder.flush()
    assert [r.id for r in client.records] == [good.id, later.id]
