"""`models`: list the models the lab can load."""

from __future__ import annotations

from core import models
from core.cli import emit_json


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="List the available models.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    parser.add_argument("--rewards", action="store_true", help="Also list reward models.")
    parser.set_defaults(func=run)


def run(args) -> int:
    rows = []
    for spec in models.list_models(include_reward=args.rewards):
        rows.append({
            "name": spec.name, "stage": spec.stage, "family": spec.family,
            "parameters": models.count_parameters(spec), "weights": spec.weights,
            "parent": spec.parent, "source": spec.source,
        })
    if args.json:
        emit_json(rows)
        return 0
    for row in rows:
        params = f"{row['parameters'] / 1e6:.1f}M" if row["parameters"] else "?"
        print(f"{row['name']:<40} {row['stage']:<7} {params:>8}  {row['source']}")
    return 0
