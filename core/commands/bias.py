"""`python -m core.cli bias {grid,probe,crows-pairs,corpus}`: the bias measurements.

    python -m core.cli bias grid --model tiny-gpt-base --n 4 --max-new-tokens 20
    python -m core.cli bias probe --model tiny-gpt-base --json
    python -m core.cli bias crows-pairs --model tiny-gpt-base --csv crows_pairs_anonymized.csv
    python -m core.cli bias corpus
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

from core import bias, crows_pairs
from core.cli import emit_json
from core.models import load_model


def register(subparsers) -> None:
    """Add the `bias` command and its subcommands to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "bias", help="measure bias: sentiment grid, log-prob probe, CrowS-Pairs, corpus counts"
    )
    commands = parser.add_subparsers(dest="bias_command", metavar="SUBCOMMAND", required=True)

    grid = commands.add_parser("grid", help="sample continuations of 'A/An [disability] "
                               "[religion] [gender]' prompts and score them with VADER")
    _add_common(grid, model=True, seed=True)
    _add_markers(grid)
    grid.add_argument("--n", type=int, default=4, help="samples per prompt (default 4)")
    grid.add_argument("--max-new-tokens", type=int, default=20,
                      help="tokens sampled after each prompt (default 20)")
    grid.add_argument("--temperature", type=float, default=1.0,
                      help="sampling temperature; 0 is greedy (default 1.0)")
    grid.add_argument("--template", default=bias.GRID_TEMPLATE,
                      help="prompt text with a {subject} placeholder (default '{subject}')")
    grid.set_defaults(func=run_grid)

    probe = commands.add_parser("probe", help="compare log P(positive word) with log P(negative "
                                "word) after 'The [group] was very'; no sampling")
    _add_common(probe, model=True, seed=True)
    _add_markers(probe)
    probe.add_argument("--template", default=bias.PROBE_TEMPLATE,
                       help="context with a {group} placeholder "
                       f"(default {bias.PROBE_TEMPLATE!r})")
    probe.set_defaults(func=run_probe)

    crows = commands.add_parser("crows-pairs", help="share of CrowS-Pairs where the more "
                                "stereotyping sentence is likelier, per bias type")
    _add_common(crows, model=True)
    crows.add_argument("--csv", default=str(crows_pairs.CROWS_SAMPLE_CSV),
                       help="CSV in the CrowS-Pairs format (default: the tiny project-written "
                       "sample, which only shows the format)")
    crows.add_argument("--limit", type=int, default=None, help="score only the first N pairs")
    crows.set_defaults(func=run_crows_pairs)

    corpus = commands.add_parser("corpus", help="count each marker in the tiny GPT's corpus")
    _add_common(corpus, model=False)
    _add_markers(corpus)
    corpus.set_defaults(func=run_corpus)


def _add_common(parser: argparse.ArgumentParser, model: bool, seed: bool = False) -> None:
    if model:
        parser.add_argument("--model", required=True, help="model name, run id or folder")
    if seed:
        parser.add_argument("--seed", type=int, default=0,
                            help="seed for sampling and bootstrap intervals (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _add_markers(parser: argparse.ArgumentParser) -> None:
    for axis in bias.AXES:
        parser.add_argument(f"--{axis}", default=None, help=(
            f"comma-separated {axis} markers, 'none' to leave the axis out "
            f"(default: {','.join(bias.DEFAULT_SELECTION[axis])})"))
    parser.add_argument("--all-markers", action="store_true",
                        help="use every marker in assets/bias/markers.json")


def _markers(args) -> dict[str, list[str]]:
    chosen = bias.load_markers() if args.all_markers else dict(bias.DEFAULT_SELECTION)
    for axis in bias.AXES:
        value = getattr(args, axis)
        if value is not None:
            chosen[axis] = [m.strip() for m in value.split(",") if m.strip()]
    return chosen


def _records(table: pd.DataFrame) -> list[dict]:
    # pandas writes NaN (an interval from a single sample) as JSON null.
    return json.loads(table.to_json(orient="records"))


def _emit(args, settings: dict, summary: pd.DataFrame, details: dict[str, pd.DataFrame]) -> None:
    if args.json:
        payload = {"settings": settings, "summary": _records(summary)}
        payload |= {key: _records(table) for key, table in details.items()}
        emit_json(payload)
    else:
        print(summary.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


def run_grid(args) -> int:
    lm = load_model(args.model)
    grid = bias.build_grid(_markers(args), args.template)
    samples = bias.run_grid(lm, grid, args.n, args.max_new_tokens, args.temperature, args.seed)
    summary = bias.summarize_grid(samples, seed=args.seed)
    settings = {"model": args.model, "n": args.n, "max_new_tokens": args.max_new_tokens,
                "temperature": args.temperature, "seed": args.seed, "template": args.template}
    _emit(args, settings, summary.drop(columns=["group"]), {"samples": samples})
    return 0


def run_probe(args) -> int:
    lm = load_model(args.model)
    groups = bias.probe_groups(bias.build_grid(_markers(args)))
    words = bias.run_probe(lm, groups, bias.load_attribute_words(), args.template)
    summary = bias.summarize_probe(words, seed=args.seed)
    settings = {"model": args.model, "template": args.template, "seed": args.seed}
    _emit(args, settings, summary, {"words": words})
    return 0


def run_crows_pairs(args) -> int:
    pairs = crows_pairs.load_crows_pairs(args.csv)
    if args.limit is not None:
        if args.limit < 1:
            raise bias.BiasInputError(f"--limit {args.limit} is invalid: use 1 or more")
        pairs = pairs.head(args.limit)
    scored = crows_pairs.score_crows_pairs(load_model(args.model), pairs)
    settings = {"model": args.model, "csv": args.csv, "pairs": len(pairs)}
    _emit(args, settings, crows_pairs.summarize_crows_pairs(scored), {"pairs": scored})
    return 0


def run_corpus(args) -> int:
    counts = bias.marker_frequencies(_markers(args))
    _emit(args, {"corpus": "bundled sources at default weights"}, counts, {})
    return 0
