"""Filesystem locations of the lab, and the environment variables that move them.

This is the only module that reads the `ALIGNMENT_LAB_*` variables; docs/architecture.md
lists them.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = REPO_ROOT / "assets"
SHIPPED_MODELS_DIR = ASSETS_DIR / "models"


def lab_home() -> Path:
    """Return the folder for runs, jobs and caches, creating it if needed."""
    raw = os.environ.get("ALIGNMENT_LAB_HOME")
    if raw:
        home = Path(raw).expanduser()
    else:
        cache_root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        home = cache_root / "alignment-lab"
    home.mkdir(parents=True, exist_ok=True)
    return home


def _subdir(name: str) -> Path:
    path = lab_home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Return the run store: one lab checkpoint folder per finished training run."""
    return _subdir("runs")


def jobs_dir() -> Path:
    """Return the folder of job records (config, status, events) for background jobs."""
    return _subdir("jobs")


def data_dir() -> Path:
    """Return the folder where the host may place data files that pages can open by name.

    Pages never open a path a visitor types; they offer only the files in this folder.
    """
    return _subdir("data")


def cache_dir() -> Path:
    """Return the folder for cached analysis results."""
    return _subdir("cache")


def converted_dir() -> Path:
    """Return the folder of converted checkpoints (GGUF to safetensors)."""
    raw = os.environ.get("ALIGNMENT_LAB_CACHE")
    path = Path(raw).expanduser() if raw else lab_home() / "converted"
    path.mkdir(parents=True, exist_ok=True)
    return path


def device_override() -> str | None:
    """Return the device the user forced with ALIGNMENT_LAB_DEVICE, or None."""
    value = os.environ.get("ALIGNMENT_LAB_DEVICE", "").strip().lower()
    return value or None


def default_model_names() -> list[str] | None:
    """Return the model names set in ALIGNMENT_LAB_MODELS, or None when unset."""
    raw = os.environ.get("ALIGNMENT_LAB_MODELS", "")
    names = [name.strip() for name in raw.split(",") if name.strip()]
    return names or None


def builtins_enabled() -> bool:
    """Return False when ALIGNMENT_LAB_BUILTINS=0 hides the built-in SmolLM2 entry."""
    return os.environ.get("ALIGNMENT_LAB_BUILTINS", "1").strip() not in {"0", "false", "no"}


def standby_enabled() -> bool:
    """Return False when ALIGNMENT_LAB_STANDBY=0 turns off the pre-started job process."""
    return os.environ.get("ALIGNMENT_LAB_STANDBY", "1").strip() not in {"0", "false", "no"}
