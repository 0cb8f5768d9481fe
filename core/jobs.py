"""Background training jobs: a file-backed queue that runs each job in its own OS process.

A job executes in a separate process (`core.job_runner`) started in a new session, so a
crash, an out-of-memory kill or a Cancel never touches the app that submitted it. All state
lives in files under `paths.jobs_dir()`, guarded by file locks, so the queue works across
Streamlit sessions and server restarts. At most `MAX_RUNNING_PER_DEVICE` jobs run per device
at once; the rest wait in submission order. `ensure_standby` keeps one process per device
with the trainers already imported, so the next job skips that import time.

Public API (every function reads the files, so any process may call it):

    submit(kind, config, owner, device=None) -> str    queue a job; return its id
    get_job(job_id) -> JobInfo                          state, queue place, run id, error
    list_jobs(owner=None) -> list[JobInfo]              newest first; only `owner`'s if given
    cancel(job_id, owner) -> JobInfo                    stop the job within about 2 s
    read_events(job_id, offset=0) -> (events, offset)   metric events after a byte offset
    read_samples(job_id, offset=0) -> (samples, offset) sample generations, likewise
    read_log(job_id, max_chars=4000) -> str             end of the job's log
    refresh() -> None                                   mark dead jobs failed, start queued ones
    wait(job_id, timeout_s) -> JobInfo                  block until the job ends (CLI, tests)
    ensure_standby(device=None) -> bool                 preload trainers for the next job
    stop_standby() -> None                              end idle standby processes
    run_inline(kind, config, ...) -> str                run in this process, land, return run id

States: `queued` -> `running` -> `done` | `failed` | `cancelled`. A running job's process
keeps an exclusive `flock` on a lock file (`alive.lock` in its folder, or its standby's lock
file, named in status.json). The kernel drops that lock when the process dies for any
reason (SIGKILL included), so `refresh` finds dead jobs by trying to take it.

Job folder `jobs/<id>/`: `config.json` (the trainer config), `status.json` (JobInfo fields),
`events.jsonl` (one metric event per line), `samples.jsonl`, `log.txt` (the process's
stdout and stderr), `alive.lock`, `cancel` (present once Cancel was pressed) and `output/`
(ctx.output_dir). When the job function returns, `output/` is landed in the run store
(`core.store.land`) as run `<id>`, so a job id is also the id of the run it produces. A job
that fails or is cancelled lands nothing and its `output/` is deleted.

Job functions: `KINDS` maps a kind to "module:function"; each is
`run_job(config: dict, ctx: JobContext) -> dict` (docs/architecture.md). The returned dict
contains the summary metrics; its optional key "run" is a dict merged into run.json (for
example {"stage": "ipo", "data_hash": dataset.content_hash()}). Without one, the runner
hashes config["rows"] or the file named by config["dataset"].
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import importlib
import json
import logging
import numbers
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core import paths, store
from core.checkpoints import write_json_atomic

logger = logging.getLogger(__name__)

KINDS = {
    "pretrain": "core.pretrain:run_job",
    "sft": "core.train.sft:run_job",
    "dpo": "core.train.dpo:run_job",
    "reward": "core.train.reward:run_job",
    "rl": "core.train.rl:run_job",
    "selftest": "core.job_runner:selftest_job",
}
# Stage written to run.json when neither the trainer nor the result sets one.
STAGE_OF_KIND = {"pretrain": "base", "selftest": "sft"}
MAX_RUNNING_PER_DEVICE = 1
# False turns ensure_standby off in this process (page tests do this to save CPU).
STANDBY_ENABLED = True
ACTIVE_STATES = ("queued", "running")
# Cancel waits COOPERATIVE_STOP_S for ctx.should_stop() to be honoured, then sends SIGTERM
# and waits TERM_GRACE_S, then sends SIGKILL and waits KILL_WAIT_S: 1.7 s at most.
COOPERATIVE_STOP_S = 0.9
TERM_GRACE_S = 0.5
KILL_WAIT_S = 0.3


class JobError(ValueError):
    """A job request is invalid, or names a job that does not exist or belongs to another."""


@dataclass
class JobInfo:
    """One job's record as stored in status.json, plus its place in the queue."""

    id: str
    kind: str
    owner: str
    device: str
    state: str  # queued, running, done, failed or cancelled
    created: str  # ISO 8601 UTC times
    started: str | None = None
    ended: str | None = None
    pid: int | None = None
    lock: str | None = None  # file the job's process keeps flock'ed; None: alive.lock
    run_id: str | None = None  # set when the job landed a run in the store
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    place: int | None = None  # 1 = next to start among the jobs waiting for this device

    @property
    def finished(self) -> bool:
        return self.state not in ACTIVE_STATES


class JobContext:
    """Handle passed to a job function: event output, the cancel flag and the output folder."""

    def __init__(self, job_dir: Path, device: str = "cpu") -> None:
        self.job_dir = Path(job_dir)
        self.job_id = self.job_dir.name
        self.device = device
        self.output_dir = self.job_dir / "output"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.logger = logging.getLogger(f"{__name__}.{self.job_id}")

    def emit(self, event: dict[str, Any]) -> None:
        """Append one metric event (a dict with an int `step`) as a line of events.jsonl."""
        step = event.get("step")
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise JobError(f"A metric event needs an integer 'step', got {event!r}.")
        record = {**event, "step": int(step), "time": time.time()}
        _append_line(self.job_dir / "events.jsonl", record)

    def sample(self, step: int, texts: list[str]) -> None:
        """Record sample generations made at `step` as a line of samples.jsonl."""
        _append_line(self.job_dir / "samples.jsonl", {"step": step, "texts": list(texts)})

    def should_stop(self) -> bool:
        """Return True once Cancel was pressed; loops check it every step and return early."""
        return (self.job_dir / "cancel").exists()


# ---------------------------------------------------------------------------- files


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _append_line(path: Path, record: dict[str, Any]) -> None:
    # One write call per line in append mode, so a reader sees whole lines or a tail
    # without a newline, which it leaves for the next read.
    line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)


def _read_lines(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
    except FileNotFoundError:
        return [], offset
    complete = chunk[: chunk.rfind(b"\n") + 1]
    records = []
    for line in complete.decode("utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("skipping an unreadable line in %s", path)
    return records, offset + len(complete)


def _job_dir(job_id: str) -> Path:
    if not isinstance(job_id, str) or not store.RUN_ID_PATTERN.match(job_id):
        raise JobError(f"Invalid job id {job_id!r}.")
    job_dir = paths.jobs_dir() / job_id
    if not (job_dir / "status.json").is_file():
        raise JobError(f"Job {job_id!r} not found in {paths.jobs_dir()}.")
    return job_dir


def _read_status(job_dir: Path) -> JobInfo:
    data = json.loads((job_dir / "status.json").read_text(encoding="utf-8"))
    return JobInfo(**data)


def _write_status(job_dir: Path, info: JobInfo) -> None:
    data = asdict(info)
    data["place"] = None  # computed on reading, never stored
    write_json_atomic(job_dir / "status.json", data)


@contextlib.contextmanager
def _queue_lock() -> Iterator[None]:
    """Hold the queue's exclusive lock: one process at a time changes job states."""
    # NOTE: fcntl.flock exists on Linux and macOS only, so jobs do not run on Windows.
    with open(paths.jobs_dir() / ".queue.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_path(job_dir: Path, info: JobInfo) -> Path:
    return Path(info.lock) if info.lock else job_dir / "alive.lock"


def _process_alive(lock_path: Path) -> bool:
    """Return True while a process (or a child it forked) keeps `lock_path` locked."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing also releases the lock if this call took it
    return False


def _start_process(args: list[str], lock_path: Path, log_path: Path) -> subprocess.Popen:
    """Start `python -m core.job_runner *args` in a new session, holding a lock on `lock_path`.

    The lock is taken here and passed to the child as an open descriptor (appended to `args`),
    so the child holds it from its first instruction until it exits.
    """
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        env = {**os.environ, "ALIGNMENT_LAB_HOME": str(paths.lab_home())}
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "core.job_runner", *args, str(lock_fd), str(os.getpid())],
                cwd=paths.REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(lock_fd,),
            )
    finally:
        os.close(lock_fd)  # the child's copy keeps the lock
    _CHILDREN[process.pid] = process
    return process


# ---------------------------------------------------------------------------- queue


def _default_device() -> str:
    from core.device import pick_device  # imports torch, so only when a job is submitted

    return pick_device().type


def submit(kind: str, config: dict[str, Any], owner: str, device: str | None = None) -> str:
    """Queue a job of `kind` with trainer `config` for `owner`; return the job id.

    The job starts at once when its device is free, otherwise it waits its turn. `config`
    must be JSON-serialisable; it is stored as config.json and recorded as the run's recipe.
    """
    if kind not in KINDS:
        raise JobError(f"Unknown job kind {kind!r}: use one of {', '.join(sorted(KINDS))}.")
    if not isinstance(owner, str) or not owner.strip():
        raise JobError("A job needs a non-empty owner id (the user or session submitting it).")
    if not isinstance(config, dict):
        raise JobError(f"A job config must be a dict of settings, got {type(config).__name__}.")
    try:
        config_text = json.dumps(config, indent=2, ensure_ascii=False)
    except TypeError as err:
        raise JobError(f"The job config must be JSON-serialisable: {err}.") from err
    try:
        device = device or str(config.get("device") or _default_device())
    except ValueError as err:  # an invalid or unavailable device was requested
        raise JobError(str(err)) from err

    created = dt.datetime.now(dt.UTC)
    job_id = f"{kind}-{created:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    staging = paths.jobs_dir() / f".{job_id}.new"
    staging.mkdir()
    (staging / "config.json").write_text(config_text, encoding="utf-8")
    info = JobInfo(id=job_id, kind=kind, owner=owner, device=device, state="queued",
                   created=created.isoformat(timespec="milliseconds"))
    _write_status(staging, info)
    os.rename(staging, paths.jobs_dir() / job_id)  # the queue never reads half a job
    logger.info("job %s queued (kind %s, owner %s, device %s)", job_id, kind, owner, device)
    refresh()
    return job_id


def _all_jobs() -> list[tuple[Path, JobInfo]]:
    jobs = []
    for job_dir in paths.jobs_dir().iterdir():
        if job_dir.name.startswith(".") or not (job_dir / "status.json").is_file():
            continue
        try:
            jobs.append((job_dir, _read_status(job_dir)))
        except (OSError, ValueError, TypeError) as err:
            logger.warning("skipping unreadable job folder %s: %s", job_dir, err)
    jobs.sort(key=lambda pair: (pair[1].created, pair[1].id))
    return jobs


def _set_places(jobs: list[tuple[Path, JobInfo]]) -> None:
    waiting: Counter[str] = Counter()
    for _, info in jobs:  # jobs are in submission order
        if info.state == "queued":
            waiting[info.device] += 1
            info.place = waiting[info.device]


def _finish(job_dir: Path, info: JobInfo, state: str, error: str | None = None) -> None:
    """Record a final state and delete whatever the job left in output/."""
    info.state, info.error, info.ended = state, error, _now()
    shutil.rmtree(job_dir / "output", ignore_errors=True)
    _write_status(job_dir, info)
    logger.info("job %s %s%s", info.id, state, f": {error}" if error else "")


def _mark_dead(job_dir: Path, info: JobInfo) -> None:
    """Settle a job whose process is gone without recording an end state."""
    if store.run_exists(info.id):  # the process died after landing but before recording it
        info.state, info.run_id, info.ended = "done", info.id, _now()
        _write_status(job_dir, info)
    elif (job_dir / "cancel").exists():
        _finish(job_dir, info, "cancelled")
    else:
        _finish(job_dir, info, "failed", "The job's process ended without finishing (it was "
                "killed, possibly for running out of memory). See its log for details.")


def _spawn(job_dir: Path, info: JobInfo) -> None:
    """Hand the job to the device's idle standby process, or start a new process for it."""
    registry = _standby_registry(info.device)
    standby = _idle_standby(registry)
    if standby is not None:
        write_json_atomic(registry, {**standby, "job": info.id})
        info.pid, info.lock = standby["pid"], standby["lock"]
    else:
        process = _start_process(["run", str(job_dir)], job_dir / "alive.lock",
                                 job_dir / "log.txt")
        info.pid, info.lock = process.pid, str(job_dir / "alive.lock")
    info.state, info.started = "running", _now()
    _write_status(job_dir, info)
    logger.info("job %s started in process %d%s", info.id, info.pid,
                " (standby)" if standby else "")


def _standby_registry(device: str) -> Path:
    return paths.jobs_dir() / f".standby-{device}.json"


def _idle_standby(registry: Path) -> dict[str, Any] | None:
    """Return the registry entry of the device's standby if it is alive and unassigned."""
    try:
        entry = json.loads(registry.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if entry.get("job") or not _process_alive(Path(entry["lock"])):
        return None
    return entry


def ensure_standby(device: str | None = None) -> bool:
    """Start a standby process for `device` unless one exists or a job is active on it.

    A standby preloads the trainers, so the next job on this device starts seconds sooner.
    It costs one idle process (a few hundred MB) and exits after an idle timeout, or when
    this process exits. Returns True when a standby was started.
    """
    if not STANDBY_ENABLED or not paths.standby_enabled():
        return False
    device = device or _default_device()
    registry = _standby_registry(device)
    with _queue_lock():
        if _idle_standby(registry) is not None:
            return False
        if any(info.device == device and not info.finished for _, info in _all_jobs()):
            return False  # never compete with a running job for the CPU
        lock_path = registry.with_name(f".standby-{device}-{secrets.token_hex(4)}.lock")
        process = _start_process(["standby", str(registry), str(lock_path)], lock_path,
                                 registry.with_suffix(".log"))
        # "ready" turns True once the standby has imported the trainers.
        write_json_atomic(registry, {"pid": process.pid, "lock": str(lock_path), "job": None,
                                     "ready": False})
    logger.info("standby for %s started as process %d", device, process.pid)
    return True


def stop_standby() -> None:
    """End every idle standby process (tests and shutdown use this)."""
    with _queue_lock():
        for registry in paths.jobs_dir().glob(".standby-*.json"):
            entry = _idle_standby(registry)
            registry.unlink(missing_ok=True)
            if entry is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(entry["pid"], signal.SIGTERM)


# Processes started by this interpreter, by pid, kept so they can be reaped when they end.
_CHILDREN: dict[int, subprocess.Popen] = {}


def refresh(max_running: int = MAX_RUNNING_PER_DEVICE) -> None:
    """Mark jobs whose process died as failed, then start queued jobs on free devices."""
    for pid, process in list(_CHILDREN.items()):
        if process.poll() is not None:
            del _CHILDREN[pid]
    with _queue_lock():
        running: Counter[str] = Counter()
        jobs = _all_jobs()
        for job_dir, info in jobs:
            if info.state != "running":
                continue
            if _process_alive(_lock_path(job_dir, info)):
                running[info.device] += 1
            else:
                _mark_dead(job_dir, info)
        for job_dir, info in jobs:
            if info.state == "queued" and running[info.device] < max_running:
                try:
                    _spawn(job_dir, info)
                except OSError as err:  # for example, no memory left to start a process
                    logger.error("starting job %s failed: %s", info.id, err)
                    _finish(job_dir, info, "failed", f"The job could not be started: {err}")
                    continue
                running[info.device] += 1


def get_job(job_id: str) -> JobInfo:
    """Return job `job_id`'s record with its queue place; raise JobError if it does not exist."""
    _job_dir(job_id)
    jobs = _all_jobs()
    _set_places(jobs)
    return next(info for _, info in jobs if info.id == job_id)


def list_jobs(owner: str | None = None) -> list[JobInfo]:
    """Return the jobs of `owner` (all jobs when None), newest first, with queue places."""
    jobs = _all_jobs()
    _set_places(jobs)
    return [info for _, info in reversed(jobs) if owner is None or info.owner == owner]


def cancel(job_id: str, owner: str) -> JobInfo:
    """Stop `owner`'s job: drop it from the queue, or end its process within about 2 s.

    The job first gets COOPERATIVE_STOP_S to notice ctx.should_stop(), then its process group
    gets SIGTERM and, after TERM_GRACE_S, SIGKILL. Nothing is landed. Raises JobError when
    the job belongs to another owner.
    """
    job_dir = _job_dir(job_id)
    with _queue_lock():
        info = _read_status(job_dir)
        if info.owner != owner:
            raise JobError(f"Job {job_id!r} belongs to another user and cannot be cancelled here.")
        if info.finished:
            return info
        (job_dir / "cancel").touch()
        if info.state == "queued":
            _finish(job_dir, info, "cancelled")
            return info
    _stop_process(_lock_path(job_dir, info), info.pid)
    refresh()
    return get_job(job_id)


def _stop_process(lock_path: Path, pid: int | None) -> None:
    for sig, wait_s in ((None, COOPERATIVE_STOP_S), (signal.SIGTERM, TERM_GRACE_S),
                        (signal.SIGKILL, KILL_WAIT_S)):
        # Signal only while the job's lock is held: then `pid` is still the job's process
        # and not a recycled id.
        if sig is not None and pid and _process_alive(lock_path):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)  # the job leads its own session, so its group id is its pid
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not _process_alive(lock_path):
                return
            time.sleep(0.02)


def wait(job_id: str, timeout_s: float = 600.0, poll_s: float = 0.1) -> JobInfo:
    """Block until job `job_id` has finished or `timeout_s` passed; return its record."""
    deadline = time.monotonic() + timeout_s
    while True:
        refresh()
        info = get_job(job_id)
        if info.finished or time.monotonic() > deadline:
            return info
        time.sleep(poll_s)


def read_events(job_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Return the metric events after byte `offset` of events.jsonl and the offset to pass next."""
    return _read_lines(_job_dir(job_id) / "events.jsonl", offset)


def read_samples(job_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Return the sample records ({"step", "texts"}) after byte `offset`, and the next offset."""
    return _read_lines(_job_dir(job_id) / "samples.jsonl", offset)


def read_config(job_id: str) -> dict[str, Any]:
    """Return the trainer config the job was submitted with."""
    return json.loads((_job_dir(job_id) / "config.json").read_text(encoding="utf-8"))


def read_log(job_id: str, max_chars: int = 4000) -> str:
    """Return the last `max_chars` characters of the job's log (its stdout and stderr)."""
    path = _job_dir(job_id) / "log.txt"
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return text[-max_chars:]


# ---------------------------------------------------------------------------- running


def resolve_kind(kind: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """Import and return the job function registered for `kind`."""
    if kind not in KINDS:
        raise JobError(f"Unknown job kind {kind!r}: use one of {', '.join(sorted(KINDS))}.")
    module_name, function_name = KINDS[kind].split(":")
    return getattr(importlib.import_module(module_name), function_name)


def run_meta(kind: str, config: dict[str, Any], result: dict[str, Any], owner: str) -> dict:
    """Build the run.json fields the runner adds: recipe, data hash, metrics and origin.

    `metrics` is the job's whole result except its "run" key, so tables such as a trainer's
    before/after probabilities are kept too.
    """
    result = dict(result or {})
    extra = result.pop("run", {}) or {}
    data = config.get("rows") if config.get("rows") is not None else _dataset_file(config)
    meta: dict[str, Any] = {
        "method": kind,
        "parent": config.get("model"),
        "recipe": {"kind": kind, **config},
        "metrics": result,
        "owner": owner,
        "rebuild": f"python -m core.cli train {kind} --config config.json",
    }
    if data is not None:
        meta["data_hash"] = store.data_hash(data)
    if config.get("name"):
        meta["name"] = config["name"]
    meta.update(extra)
    meta.setdefault("stage", STAGE_OF_KIND.get(kind, kind))
    return {k: v for k, v in meta.items() if v is not None}


def _dataset_file(config: dict[str, Any]) -> Any:
    """Return the file behind config["dataset"] (a path or a bundled name), or the name itself."""
    dataset = config.get("dataset")
    if not isinstance(dataset, str) or Path(dataset).is_file():
        return dataset
    from core import data  # imported here because only bundled names need it

    bundled = {item.name: item.path for item in data.list_bundled()}
    return bundled.get(dataset, dataset)


def run_inline(kind: str, config: dict[str, Any], output_root: Path | None = None,
               on_event: Callable[[dict[str, Any]], None] | None = None,
               owner: str = "cli") -> str:
    """Run a job in this process (for the CLI), land it in the store and return the run id.

    Events go to `on_event` as well as to the job folder. Raises whatever the job raises.
    """
    created = dt.datetime.now(dt.UTC)
    job_id = f"{kind}-{created:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    job_dir = Path(output_root or paths.jobs_dir()) / job_id
    job_dir.mkdir(parents=True)
    ctx = JobContext(job_dir, device=str(config.get("device") or _default_device()))
    if on_event is not None:
        emit = ctx.emit
        ctx.emit = lambda event: (emit(event), on_event(event))  # type: ignore[method-assign]
    result = resolve_kind(kind)(config, ctx) or {}
    store.land(ctx.output_dir, job_id, run_meta(kind, config, result, owner))
    return job_id
