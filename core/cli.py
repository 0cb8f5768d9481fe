"""Command line for the lab: `python -m core.cli <command> [options]`.

Each module in `core/commands/` adds its commands through `register(subparsers)`, so the
CLI offers what the browser offers (models, probabilities, generation, training, analysis)
to homework scripts and headless machines. Every command takes `--json`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import pkgutil
import sys
from typing import Any

from core import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.cli",
                                     description="Alignment Lab on the command line.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"core.commands.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def emit_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout (the form every `--json` flag gives)."""
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def model_names(value: str) -> list[str]:
    """Split a comma-separated model list; raise ValueError when it names no model."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise ValueError(f"No model name in {value!r}: pass one such as smollm2-135m-instruct, "
                         "or several separated by commas (see `models`).")
    return names


def progress_printers(format_event, quiet: bool):
    """Return `(on_event, on_sample)` callbacks that print training progress to stderr.

    `format_event(event)` turns a metric event into one line, or None to skip it. With
    `quiet` (as under `--json`, whose stdout must stay pure JSON) nothing is printed.
    """

    def on_event(event: dict[str, Any]) -> None:
        line = None if quiet else format_event(event)
        if line:
            print(line, file=sys.stderr, flush=True)

    def on_sample(step: int, texts: list[str]) -> None:
        if not quiet:
            for text in texts:
                print(f"  sample @{step}: {text!r}", file=sys.stderr, flush=True)

    return on_event, on_sample


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from core.models import ModelError

    try:
        return int(args.func(args) or 0)
    except (ModelError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
