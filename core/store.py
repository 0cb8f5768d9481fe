"""The run store: finished training runs, kept as lab checkpoints under `paths.runs_dir()`.

Each run is a folder `runs/<id>/` with a `run.json` (fields in docs/architecture.md), the
weights and the tokenizer. `core.models.list_models()` reads the same folders, so a run
appears as a model on every page once it lands here.

Public API:

    list_runs(stage=None) -> list[dict]      run.json of every run, newest first
    read_run(run_id) -> dict                 one run.json; raises StoreError if missing
    run_path(run_id) -> Path                 the run's folder (it may not exist)
    run_exists(run_id) -> bool
    land(output_dir, run_id, meta) -> Path   move a finished job's folder into the store
    delete_run(run_id) -> None               remove a run as a whole
    data_hash(data) -> str                   sha256 of training rows or of a data file
    validate_run_id(run_id) -> str

`land` writes run.json inside the job's folder and then renames the folder into place, so
a reader sees either no run or the complete run, never partial weights. Folder names that
start with "." are temporary and never listed.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from core import paths
from core.checkpoints import RUN_FILE, write_json_atomic

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class StoreError(ValueError):
    """A run is missing, has an invalid id, or cannot be landed."""


def validate_run_id(run_id: str) -> str:
    """Return `run_id` unchanged, or raise StoreError when it is unsafe as a folder name."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise StoreError(
            f"Invalid run id {run_id!r}: use 1 to 100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return run_id


def run_path(run_id: str) -> Path:
    """Return the folder of run `run_id` in the store (it may not exist)."""
    return paths.runs_dir() / validate_run_id(run_id)


def run_exists(run_id: str) -> bool:
    """Return True when run `run_id` has landed (its folder contains a run.json)."""
    return (run_path(run_id) / RUN_FILE).is_file()


def read_run(run_id: str) -> dict[str, Any]:
    """Read the run.json of run `run_id`; raise StoreError when the run is not in the store."""
    path = run_path(run_id) / RUN_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"Run {run_id!r} not found in {paths.runs_dir()}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreError(
            f"{path} is not valid JSON ({err}); delete the run and train it again.") from err
    meta.setdefault("id", run_id)
    return meta


def list_runs(stage: str | None = None) -> list[dict[str, Any]]:
    """Return the run.json of every landed run, newest first, optionally of one `stage`.

    Unreadable run folders are skipped, so one broken run never hides the others.
    """
    runs = []
    for folder in paths.runs_dir().iterdir():
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            meta = read_run(folder.name)
        except StoreError:
            continue
        if stage is None or meta.get("stage") == stage:
            runs.append(meta)
    runs.sort(key=lambda meta: str(meta.get("created", "")), reverse=True)
    return runs


def land(output_dir: Path, run_id: str, meta: dict[str, Any]) -> Path:
    """Move a finished job's checkpoint folder into the store as run `run_id`.

    `meta` is merged over any run.json the trainer already wrote (for example through
    `core.checkpoints.save_checkpoint`), and `id` and `created` are set by the store. The
    folder is renamed into place in one step. When the store is on another filesystem, the
    folder is first copied to a hidden folder beside the target. Raises StoreError when `output_dir`
    has no files or run `run_id` already exists.
    """
    output_dir = Path(output_dir)
    target = run_path(run_id)
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        raise StoreError(
            f"Cannot land run {run_id!r}: {output_dir} contains no checkpoint files. "
            "The job must save its weights into ctx.output_dir before returning."
        )
    if target.exists():
        raise StoreError(f"Cannot land run {run_id!r}: {target} already exists.")

    existing: dict[str, Any] = {}
    if (output_dir / RUN_FILE).is_file():
        existing = json.loads((output_dir / RUN_FILE).read_text(encoding="utf-8"))
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    full_meta = {"weights": "full", **existing, **meta, "id": run_id, "created": created}
    write_json_atomic(output_dir / RUN_FILE, full_meta)

    try:
        os.rename(output_dir, target)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        staging = target.with_name(f".{run_id}.incoming-{uuid.uuid4().hex}")
        shutil.copytree(output_dir, staging)
        os.rename(staging, target)
        shutil.rmtree(output_dir, ignore_errors=True)
    return target


def delete_run(run_id: str) -> None:
    """Remove run `run_id`: rename it aside first so it disappears in one step, then delete.

    Raises StoreError when the run does not exist. A model already loaded in memory from
    this run keeps working until it is evicted from the cache.
    """
    target = run_path(run_id)
    if not target.is_dir():
        raise StoreError(f"Run {run_id!r} not found in {paths.runs_dir()}.")
    trash = target.with_name(f".{run_id}.deleted-{uuid.uuid4().hex}")
    os.rename(target, trash)
    shutil.rmtree(trash, ignore_errors=True)


def data_hash(data: Any) -> str:
    """Return the sha256 (hex) of training data: a file path's bytes, or rows as canonical JSON.

    Rows are hashed as JSON with sorted keys, so the same rows give the same hash whatever
    their key order.
    """
    digest = hashlib.sha256()
    if isinstance(data, (str, Path)) and Path(data).is_file():
        with open(data, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode())
    return digest.hexdigest()
