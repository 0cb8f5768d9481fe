"""Tests of the job queue, using the `selftest` job kind so no trainer or model is needed."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from core import jobs, store


@pytest.fixture(autouse=True)
def isolated_home(lab_home):
    """Run every test against an empty lab home, and end any standby process it started."""
    yield lab_home
    jobs.stop_standby()


def _wait_for(predicate, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs.refresh()
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _events_seen(job_id, count):
    return len(jobs.read_events(job_id)[0]) >= count


def test_submit_runs_and_lands_run():
    job_id = jobs.submit("selftest", {"steps": 3, "model": "tiny", "rows": [{"a": 1}]},
                         owner="alice", device="cpu")
    info = jobs.wait(job_id, timeout_s=60)
    assert info.state == "done", jobs.read_log(job_id)
    assert info.run_id == job_id
    meta = store.read_run(job_id)
    assert meta["parent"] == "tiny"
    assert meta["method"] == "selftest"
    assert meta["recipe"]["steps"] == 3
    assert meta["data_hash"] == store.data_hash([{"a": 1}])
    assert meta["metrics"]["loss/train"] == pytest.approx(1 / 3)
    assert (store.run_path(job_id) / "weights.json").is_file()
    assert not (store.run_path(job_id) / "partial.bin").exists()


def test_events_and_samples_read_by_offset():
    job_id = jobs.submit("selftest", {"steps": 4}, owner="alice", device="cpu")
    jobs.wait(job_id, timeout_s=60)
    events, offset = jobs.read_events(job_id)
    assert [event["step"] for event in events] == [0, 1, 2, 3]
    assert events[1]["loss/train"] == pytest.approx(0.5)
    more, same_offset = jobs.read_events(job_id, offset)
    assert more == []
    assert same_offset == offset
    samples, _ = jobs.read_samples(job_id)
    assert samples[0]["texts"] == ["sample at step 0"]


def test_partial_line_left_for_next_read(lab_home):
    job_id = jobs.submit("selftest", {"steps": 1}, owner="alice", device="cpu")
    jobs.wait(job_id, timeout_s=60)
    path = lab_home / "jobs" / job_id / "events.jsonl"
    _, offset = jobs.read_events(job_id)
    with open(path, "a") as handle:
        handle.write('{"step": 7, "loss/tr')
    events, new_offset = jobs.read_events(job_id, offset)
    assert events == []
    assert new_offset == offset


def test_cancel_cooperative_stops_job_without_run():
    job_id = jobs.submit("selftest", {"steps": 500, "sleep": 0.05}, owner="alice", device="cpu")
    assert _wait_for(lambda: _events_seen(job_id, 2))
    info = jobs.cancel(job_id, owner="alice")
    assert info.state == "cancelled"
    assert not store.run_exists(job_id)
    assert not (store.run_path(job_id)).exists()


@pytest.mark.parametrize("option", ["ignore_cancel", "ignore_sigterm"])
def test_cancel_ends_unresponsive_job(option, lab_home):
    config = {"steps": 500, "sleep": 0.05, "ignore_cancel": True, option: True}
    job_id = jobs.submit("selftest", config, owner="alice", device="cpu")
    assert _wait_for(lambda: _events_seen(job_id, 2))
    pid = jobs.get_job(job_id).pid
    info = jobs.cancel(job_id, owner="alice")
    # cancel() returns after at most COOPERATIVE_STOP_S + TERM_GRACE_S + KILL_WAIT_S, and
    # by then the process must be gone.
    assert info.state == "cancelled"
    assert not jobs._process_alive(lab_home / "jobs" / job_id / "alive.lock")
    with pytest.raises(ProcessLookupError):
        _reap_and_signal(pid)
    assert not (lab_home / "jobs" / job_id / "output").exists()
    assert not store.run_exists(job_id)


def _reap_and_signal(pid):
    for process in list(jobs._CHILDREN.values()):
        process.poll()
    os.kill(pid, 0)


def test_sigkill_marks_failed_without_partial_weights(lab_home):
    job_id = jobs.submit("selftest", {"steps": 500, "sleep": 0.05}, owner="alice", device="cpu")
    assert _wait_for(lambda: _events_seen(job_id, 3))
    assert (lab_home / "jobs" / job_id / "output" / "partial.bin").is_file()
    os.killpg(jobs.get_job(job_id).pid, signal.SIGKILL)
    assert _wait_for(lambda: jobs.get_job(job_id).finished)
    info = jobs.get_job(job_id)
    assert info.state == "failed"
    assert "killed" in info.error
    assert store.list_runs() == []
    assert not (lab_home / "jobs" / job_id / "output").exists()


def test_crash_marks_failed_and_caller_continues():
    job_id = jobs.submit("selftest", {"steps": 5, "crash_at": 2}, owner="alice", device="cpu")
    info = jobs.wait(job_id, timeout_s=60)
    assert info.state == "failed"
    assert "selftest crash requested at step 2" in info.error
    assert "Traceback" in jobs.read_log(job_id)
    assert not store.run_exists(job_id)
    # The caller is unaffected: the queue still accepts and runs jobs.
    next_id = jobs.submit("selftest", {"steps": 1}, owner="alice", device="cpu")
    assert jobs.wait(next_id, timeout_s=60).state == "done"


def test_queue_runs_one_per_device_in_order():
    first = jobs.submit("selftest", {"steps": 400, "sleep": 0.05}, owner="alice", device="cpu")
    second = jobs.submit("selftest", {"steps": 1}, owner="bob", device="cpu")
    third = jobs.submit("selftest", {"steps": 1}, owner="alice", device="cpu")
    other_device = jobs.submit("selftest", {"steps": 1}, owner="carol", device="cuda")
    assert jobs.get_job(first).state == "running"
    assert jobs.get_job(second).place == 1
    assert jobs.get_job(third).place == 2
    assert jobs.get_job(other_device).state in ("running", "done")

    jobs.cancel(first, owner="alice")
    assert jobs.wait(second, timeout_s=60).state == "done"
    assert jobs.wait(third, timeout_s=60).state == "done"
    assert jobs.get_job(second).started < jobs.get_job(third).started


def test_queued_job_cancelled_without_starting():
    first = jobs.submit("selftest", {"steps": 400, "sleep": 0.05}, owner="alice", device="cpu")
    second = jobs.submit("selftest", {"steps": 1}, owner="alice", device="cpu")
    info = jobs.cancel(second, owner="alice")
    assert info.state == "cancelled"
    assert info.started is None
    jobs.cancel(first, owner="alice")


def test_owners_are_isolated():
    alice_job = jobs.submit("selftest", {"steps": 400, "sleep": 0.05}, owner="alice",
                            device="cpu")
    bob_job = jobs.submit("selftest", {"steps": 1}, owner="bob", device="cpu")
    assert [info.id for info in jobs.list_jobs(owner="alice")] == [alice_job]
    assert [info.id for info in jobs.list_jobs(owner="bob")] == [bob_job]
    with pytest.raises(jobs.JobError, match="another user"):
        jobs.cancel(alice_job, owner="bob")
    assert jobs.get_job(alice_job).state == "running"
    jobs.cancel(alice_job, owner="alice")


def test_submit_rejects_bad_requests():
    with pytest.raises(jobs.JobError, match="Unknown job kind 'nope'"):
        jobs.submit("nope", {}, owner="alice", device="cpu")
    with pytest.raises(jobs.JobError, match="owner"):
        jobs.submit("selftest", {}, owner=" ", device="cpu")
    with pytest.raises(jobs.JobError, match="JSON-serialisable"):
        jobs.submit("selftest", {"x": object()}, owner="alice", device="cpu")
    with pytest.raises(jobs.JobError, match="not found"):
        jobs.get_job("selftest-missing")


def test_state_survives_new_process_view(lab_home):
    # A restarted server reads the same jobs back from the files.
    job_id = jobs.submit("selftest", {"steps": 1}, owner="alice", device="cpu")
    jobs.wait(job_id, timeout_s=60)
    jobs._CHILDREN.clear()
    status = json.loads((lab_home / "jobs" / job_id / "status.json").read_text())
    assert status["state"] == "done"
    assert jobs.list_jobs(owner="alice")[0].id == job_id


def test_run_inline_lands_run():
    seen = []
    run_id = jobs.run_inline("selftest", {"steps": 2}, on_event=seen.append)
    assert [event["step"] for event in seen] == [0, 1]
    assert store.read_run(run_id)["metrics"]["steps"] == 2


def test_unreadable_event_line_skipped(lab_home):
    job_id = jobs.submit("selftest", {"steps": 1}, owner="alice", device="cpu")
    jobs.wait(job_id, timeout_s=60)
    with open(lab_home / "jobs" / job_id / "events.jsonl", "a") as handle:
        handle.write("{broken\n")
        handle.write('{"step": 9}\n')
    events, _ = jobs.read_events(job_id)
    assert [event["step"] for event in events] == [0, 9]


def test_standby_runs_next_job(lab_home, monkeypatch):
    monkeypatch.setenv("ALIGNMENT_LAB_STANDBY", "1")
    assert jobs.ensure_standby("cpu") is True
    assert jobs.ensure_standby("cpu") is False  # one idle standby per device
    standby_pid = json.loads((lab_home / "jobs" / ".standby-cpu.json").read_text())["pid"]
    job_id = jobs.submit("selftest", {"steps": 2}, owner="alice", device="cpu")
    assert jobs.get_job(job_id).pid == standby_pid
    info = jobs.wait(job_id, timeout_s=120)
    assert info.state == "done", jobs.read_log(job_id)
    assert "sample at step 1" in json.dumps(jobs.read_samples(job_id)[0])
    assert not (lab_home / "jobs" / ".standby-cpu.json").exists()


def test_standby_skipped_while_job_runs(monkeypatch):
    monkeypatch.setenv("ALIGNMENT_LAB_STANDBY", "1")
    job_id = jobs.submit("selftest", {"steps": 400, "sleep": 0.05}, owner="alice", device="cpu")
    assert jobs.ensure_standby("cpu") is False
    jobs.cancel(job_id, owner="alice")


def test_standby_killed_job_marked_failed(lab_home, monkeypatch):
    monkeypatch.setenv("ALIGNMENT_LAB_STANDBY", "1")
    jobs.ensure_standby("cpu")
    job_id = jobs.submit("selftest", {"steps": 500, "sleep": 0.05}, owner="alice", device="cpu")
    assert _wait_for(lambda: _events_seen(job_id, 2), timeout_s=120)
    os.killpg(jobs.get_job(job_id).pid, signal.SIGKILL)
    assert _wait_for(lambda: jobs.get_job(job_id).finished)
    assert jobs.get_job(job_id).state == "failed"
    assert not store.run_exists(job_id)


def test_stop_standby_ends_idle_process(lab_home, monkeypatch):
    monkeypatch.setenv("ALIGNMENT_LAB_STANDBY", "1")
    jobs.ensure_standby("cpu")
    entry = json.loads((lab_home / "jobs" / ".standby-cpu.json").read_text())
    jobs.stop_standby()
    assert _wait_for(lambda: not jobs._process_alive(Path(entry["lock"])))
    assert not (lab_home / "jobs" / ".standby-cpu.json").exists()


def test_standby_marks_itself_ready(lab_home, monkeypatch):
    monkeypatch.setenv("ALIGNMENT_LAB_STANDBY", "1")
    jobs.ensure_standby("cpu")
    registry = lab_home / "jobs" / ".standby-cpu.json"
    assert _wait_for(lambda: json.loads(registry.read_text()).get("ready"), timeout_s=120)
    assert json.loads(registry.read_text())["job"] is None
