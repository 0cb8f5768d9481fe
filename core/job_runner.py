"""The process side of a job: run one job, or wait warm as a standby for the next one.

`core.jobs` starts these processes; pages never import this module.

    python -m core.job_runner run <job_dir> <lock_fd> <parent_pid>
    python -m core.job_runner standby <registry_file> <lock_file> <lock_fd> <parent_pid>

A standby imports torch, transformers and every trainer first, which takes seconds, and then
waits until `core.jobs` writes a job id into its registry file. The job then starts without
that import time. A standby runs one job and exits, like a cold process, so no memory or
state carries over from one job to the next. It exits unassigned after STANDBY_IDLE_S, or
when the process that started it has gone.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from core import jobs, store

logger = logging.getLogger(__name__)

STANDBY_IDLE_S = 600.0  # an unassigned standby exits after this long
STANDBY_POLL_S = 0.05  # how often a standby reads its registry file


def execute(job_dir: Path) -> None:
    """Run the job in this process, then land its output or record why it failed."""
    info = jobs._read_status(job_dir)
    config = json.loads((job_dir / "config.json").read_text(encoding="utf-8"))
    ctx = jobs.JobContext(job_dir, device=info.device)
    try:
        result = jobs.resolve_kind(info.kind)(config, ctx) or {}
        if not isinstance(result, dict):
            raise jobs.JobError(
                f"Job kind {info.kind!r} returned {type(result).__name__}, not a dict.")
        meta = jobs.run_meta(info.kind, config, result, info.owner)
    except Exception as err:  # noqa: BLE001 (any failure of the job is recorded, not raised)
        traceback.print_exc()
        stopped = ctx.should_stop()
        with jobs._queue_lock():
            jobs._finish(job_dir, info, "cancelled" if stopped else "failed",
                         None if stopped else f"{type(err).__name__}: {err}")
        return

    with jobs._queue_lock():
        if ctx.should_stop():
            jobs._finish(job_dir, info, "cancelled")
            return
        try:
            store.land(ctx.output_dir, info.id, meta)
        except (store.StoreError, OSError) as err:
            logger.error("landing job %s failed: %s", info.id, err)
            jobs._finish(job_dir, info, "failed", str(err))
            return
        info.state, info.run_id, info.ended = "done", info.id, jobs._now()
        info.result = meta["metrics"]
        jobs._write_status(job_dir, info)


def _preload() -> None:
    """Import every job kind's module, so an assigned job skips the import time."""
    for target in jobs.KINDS.values():
        module_name = target.split(":")[0]
        try:
            importlib.import_module(module_name)
        except ImportError as err:  # a trainer not written yet; its jobs fail when they run
            logger.warning("standby could not import %s: %s", module_name, err)


def _read_entry(registry: Path) -> dict[str, Any] | None:
    try:
        return json.loads(registry.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _assigned_job(registry: Path) -> str | None:
    entry = _read_entry(registry)
    return entry.get("job") if entry else None


def _retire(registry: Path, lock_path: Path) -> bool:
    """Remove this standby's registry unless a job was assigned meanwhile; True if removed."""
    with jobs._queue_lock():
        entry = _read_entry(registry) or {}
        if entry.get("job"):
            return False
        if entry.get("lock") == str(lock_path):
            registry.unlink(missing_ok=True)
        lock_path.unlink(missing_ok=True)
        return True


def standby(registry: Path, lock_path: Path, parent_pid: int) -> None:
    """Preload the trainers, wait for a job id in `registry`, then run that job."""
    _preload()
    with jobs._queue_lock():  # mark the standby ready, unless it was assigned or replaced
        entry = _read_entry(registry)
        if entry is not None and entry.get("lock") == str(lock_path) and not entry.get("job"):
            jobs.write_json_atomic(registry, {**entry, "ready": True})
    idle_since = time.monotonic()
    while True:
        job_id = _assigned_job(registry)
        if job_id:
            break
        idle = time.monotonic() - idle_since > STANDBY_IDLE_S
        if (idle or os.getppid() != parent_pid or not registry.exists()) \
                and _retire(registry, lock_path):
            logger.info("standby %d exits unassigned", os.getpid())
            return
        time.sleep(STANDBY_POLL_S)

    job_dir = jobs.paths.jobs_dir() / job_id
    log = os.open(job_dir / "log.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)  # from here on, output goes to the job's own log
    os.dup2(log, 2)
    os.close(log)
    registry.unlink(missing_ok=True)
    execute(job_dir)
    lock_path.unlink(missing_ok=True)  # the job has its end state, so refresh no longer checks it


def selftest_job(config: dict[str, Any], ctx: jobs.JobContext) -> dict[str, Any]:
    """Emit a few fake metric events and save a small file, to test the runner without a trainer.

    Config: `steps` (default 5), `sleep` seconds per step, `crash_at` (raise at that step),
    `ignore_cancel` (never check should_stop) and `ignore_sigterm` (survive SIGTERM). Writes
    a partial file every step and `weights.json` at the end.
    """
    if config.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    steps = int(config.get("steps", 5))
    for step in range(steps):
        if not config.get("ignore_cancel") and ctx.should_stop():
            return {"stopped_at": step}
        if config.get("crash_at") == step:
            raise RuntimeError(f"selftest crash requested at step {step}")
        ctx.emit({"step": step, "loss/train": 1.0 / (1 + step)})
        ctx.sample(step, [f"sample at step {step}"])
        (ctx.output_dir / "partial.bin").write_bytes(b"\0" * 16 * (step + 1))
        time.sleep(float(config.get("sleep", 0.0)))
    (ctx.output_dir / "partial.bin").unlink(missing_ok=True)
    (ctx.output_dir / "weights.json").write_text(json.dumps({"steps": steps}), encoding="utf-8")
    return {"loss/train": 1.0 / steps, "steps": steps}


def main(argv: list[str]) -> int:
    """Run one job or a standby; the lock descriptor stays open, and locked, until exit."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if argv[0] == "run":
            execute(Path(argv[1]))
        elif argv[0] == "standby":
            standby(Path(argv[1]), Path(argv[2]), int(argv[4]))
        else:
            raise SystemExit(f"Unknown mode {argv[0]!r}: use 'run' or 'standby'.")
    finally:
        jobs.refresh()  # start the next queued job now that this process is done
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
