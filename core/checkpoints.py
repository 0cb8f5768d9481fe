"""Lab checkpoints: a folder with `run.json`, weights and tokenizer files.

Shipped checkpoints (`assets/models/<id>/`) and training runs (`$ALIGNMENT_LAB_HOME/runs/<id>/`)
share this form; docs/architecture.md describes `run.json`. Every write goes to a temporary
folder beside the target and is renamed into place, so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"
STAGES = ("base", "sft", "dpo", "ipo", "rl", "reward")
WEIGHT_FORMS = ("full", "lora")


class CheckpointError(ValueError):
    """A lab checkpoint folder is missing, incomplete or has an invalid run.json."""


def is_checkpoint(folder: Path) -> bool:
    """Return True when `folder` contains a run.json."""
    return (Path(folder) / RUN_FILE).is_file()


def read_meta(folder: Path) -> dict[str, Any]:
    """Read and check a checkpoint's run.json; raise CheckpointError naming what is wrong."""
    folder = Path(folder)
    path = folder / RUN_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder} is not a lab checkpoint: {RUN_FILE} is missing.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); rebuild the checkpoint.") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} must contain a JSON object, found {type(meta).__name__}.")
    meta.setdefault("id", folder.name)
    meta.setdefault("weights", "full")
    meta.setdefault("stage", "base")
    if meta["weights"] not in WEIGHT_FORMS:
        raise CheckpointError(
            f"{path}: weights={meta['weights']!r} is invalid; use one of {', '.join(WEIGHT_FORMS)}."
        )
    if meta["weights"] == "lora" and not meta.get("parent"):
        raise CheckpointError(f"{path}: a LoRA checkpoint needs a 'parent' model name.")
    return meta


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


def replace_dir_atomic(source: Path, target: Path) -> None:
    """Move a finished folder into place; an existing `target` is replaced as a whole.

    The old folder is first renamed aside, so at every moment `target` is either the old
    complete folder or the new one.
    """
    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    trash = None
    if target.exists():
        trash = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
        os.replace(target, trash)
    os.replace(source, target)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def save_checkpoint(model, tokenizer, meta: dict[str, Any], target_dir: Path) -> Path:
    """Save a model (or a peft adapter), its tokenizer and run.json as a lab checkpoint.

    A `peft.PeftModel` is saved as an adapter (`weights: "lora"`, `meta["parent"]` required);
    any other model is saved in full as safetensors. Returns the final folder.
    """
    target_dir = Path(target_dir)
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = target_dir.with_name(f".{target_dir.name}.tmp-{uuid.uuid4().hex}")
    tmp.mkdir()
    try:
        is_adapter = hasattr(model, "peft_config")
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        full_meta = {
            "id": target_dir.name,
            "weights": "lora" if is_adapter else "full",
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **meta,
        }
        if full_meta["weights"] == "lora" and not full_meta.get("parent"):
            raise CheckpointError("Saving a LoRA adapter needs meta['parent'], the base model name.")
        write_json_atomic(tmp / RUN_FILE, full_meta)
        replace_dir_atomic(tmp, target_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target_dir


def weights_size_bytes(folder: Path) -> int:
    """Return the total size of the weight files (safetensors and bin) in a folder."""
    folder = Path(folder)
    return sum(
        p.stat().st_size for p in folder.iterdir() if p.suffix in {".safetensors", ".bin", ".gguf"}
    )
