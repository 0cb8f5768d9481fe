"""Prompt sets shipped in `assets/prompts/`: one JSON object per line with `text`, `kind`
("text" for pretraining-style openings, "chat" for questions) and `category`.

The shipped file interleaves kinds and shuffles categories, so its first N prompts are a
balanced sample; `load_prompts(n)` returns that prefix, which makes results for the same N
comparable between models and between runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from core import paths

PROMPTS_DIR = paths.ASSETS_DIR / "prompts"
DEFAULT_SET = "prompts"  # assets/prompts/prompts.jsonl
REQUIRED_FIELDS = ("text", "kind", "category")


def prompt_set_path(name: str = DEFAULT_SET) -> Path:
    """Return the file of a prompt set: a shipped set's name or a path to a .jsonl file."""
    candidate = Path(name).expanduser()
    if candidate.suffix == ".jsonl" and candidate.is_file():
        return candidate
    shipped = PROMPTS_DIR / f"{name}.jsonl"
    if shipped.is_file():
        return shipped
    known = sorted(p.stem for p in PROMPTS_DIR.glob("*.jsonl"))
    raise ValueError(f"Prompt set {name!r} not found. Shipped sets: {known}; "
                     "or give the path of a .jsonl file with text, kind and category fields.")


def load_prompts(n: int | None = None, name: str = DEFAULT_SET) -> pd.DataFrame:
    """Load the first `n` prompts (all when None) with columns text, kind, category."""
    path = prompt_set_path(name)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    frame = pd.DataFrame(rows)
    missing = [field for field in REQUIRED_FIELDS if field not in frame.columns]
    if missing:
        raise ValueError(f"Prompt set {path} lacks the fields {missing}; each line needs "
                         f"{list(REQUIRED_FIELDS)}.")
    if n is not None:
        if not 2 <= n <= len(frame):
            raise ValueError(f"n={n} prompts is invalid for {path.name}, which has {len(frame)}; "
                             f"use 2 to {len(frame)}.")
        frame = frame.iloc[:n]
    return frame[list(REQUIRED_FIELDS)].reset_index(drop=True)
