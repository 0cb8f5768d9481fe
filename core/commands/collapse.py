"""`python -m core.cli collapse` and `diversity`: representation geometry and output diversity.

    python -m core.cli collapse --model tiny-gpt-base --model tiny-gpt-dpo --n 256
    python -m core.cli diversity --model tiny-gpt-sft --reference tiny-gpt-base --json
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

import pandas as pd

from core import collapse, diversity, models
from core.cli import emit_json
from core.prompt_sets import DEFAULT_SET, load_prompts


def register(subparsers) -> None:
    """Add the `collapse` and `diversity` commands to the CLI's subparsers."""
    geo = subparsers.add_parser(
        "collapse", help="geometry of hidden states over a prompt set (effective rank, "
        "IsoScore, cosines) with bootstrap intervals and a Gaussian null")
    _add_common(geo)
    geo.add_argument("--n", type=int, default=256,
                     help="number of prompts, taken from the start of the set (default 256)")
    geo.add_argument("--pooling", choices=list(collapse.POOLINGS), default="last",
                     help="last prompt token, or mean over tokens without position 0")
    geo.add_argument("--depth", type=float, default=1.0,
                     help="layer as a share of depth: 0 embeddings, 0.5 middle, 1 final (default)")
    geo.add_argument("--n-boot", type=int, default=200,
                     help="bootstrap resamples over prompts (default 200)")
    geo.add_argument("--bf16", action="store_true",
                     help="run the forward pass under bfloat16 autocast: faster on CPUs with bf16 "
                          "units, but some metrics move by more than their intervals")
    geo.set_defaults(func=run_collapse)

    div = subparsers.add_parser(
        "diversity", help="sample continuations and score their diversity (distinct-n, EAD, "
        "self-BLEU, embeddings, variety, entropy, KL to a reference)")
    _add_common(div)
    div.add_argument("--reference", default=None,
                     help="model whose tokenizer, middle layer and distribution are the fixed "
                     "ruler (default: the first --model)")
    div.add_argument("--n", type=int, default=8, help="number of prompts (default 8)")
    div.add_argument("--n-samples", type=int, default=8, help="samples per prompt (default 8)")
    div.add_argument("--length", type=int, default=24, help="tokens per sample (default 24)")
    div.add_argument("--temperatures", default="1.0,0.7",
                     help="comma-separated sampling temperatures (default 1.0,0.7)")
    div.set_defaults(func=run_diversity)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", default=None,
                        help="model name, run id or folder; repeat for several "
                        "(default: the lab's default base, SFT and DPO)")
    parser.add_argument("--prompts", default=DEFAULT_SET,
                        help="shipped prompt set name or path to a .jsonl file (default 'prompts')")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for bootstrap, null and sampling (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _load(names: list[str] | None) -> list[models.LoadedModel]:
    names = names or models.default_model_names()
    if not names:
        raise models.ModelError("No models found: pass --model NAME or train a model first.")
    return [models.load_model(name) for name in names]


def run_collapse(args) -> int:
    """Measure geometry for each model and print the metric table with the null."""
    try:
        prompts = list(load_prompts(args.n, args.prompts)["text"])
        settings = collapse.CollapseSettings(pooling=args.pooling, depth=args.depth,
                                             n_boot=args.n_boot, seed=args.seed, bf16=args.bf16)
        settings.validate()
        results = [collapse.model_geometry(lm, prompts, settings) for lm in _load(args.model)]
    except (ValueError, models.ModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    nulls = {r.dim: collapse.null_geometry(len(prompts), r.dim, settings) for r in results}
    table = collapse.metric_table(results + list(nulls.values()))
    if args.json:
        emit_json({
            "n_prompts": len(prompts), "settings": asdict(settings), "table": _records(table),
            "layer_curves": {r.model: _records(r.layer_curve) for r in results},
        })
        return 0
    print(f"{len(prompts)} prompts, pooling: {collapse.POOLINGS[settings.pooling]}. "
          "These metrics depend on N; compare models only at the same N.")
    print(_wide(table).to_string(index=False))
    return 0


def _records(table: pd.DataFrame) -> list[dict]:
    """Return the rows as dicts with NaN turned into None, so the output is valid JSON."""
    return table.astype(object).where(table.notna(), None).to_dict(orient="records")


def _wide(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.assign(cell=[f"{v:.3g} [{lo:.3g}, {hi:.3g}]" for v, lo, hi in
                               zip(table["value"], table["low"], table["high"])])
    return shown.pivot(index="label", columns="model", values="cell").reset_index()


def run_diversity(args) -> int:
    """Sample from each model and print its diversity scores."""
    try:
        temperatures = tuple(float(t) for t in args.temperatures.split(",") if t.strip())
        settings = diversity.DiversitySettings(n_samples=args.n_samples, length=args.length,
                                               temperatures=temperatures, seed=args.seed)
        settings.validate()
        prompts = list(load_prompts(args.n, args.prompts)["text"])
        loaded = _load(args.model)
        reference = models.load_model(args.reference) if args.reference else loaded[0]
        results = [diversity.cached_diversity(lm, prompts, reference, settings) for lm in loaded]
    except (ValueError, models.ModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = pd.concat([t for t, _ in results], ignore_index=True)
    if args.json:
        emit_json({"reference": reference.name, "n_prompts": len(prompts),
                   "settings": asdict(settings), "table": _records(table)})
        return 0
    print(f"{len(prompts)} prompts x {settings.n_samples} samples of {settings.length} tokens; "
          f"reference model: {reference.name}")
    for (temperature, scope), part in table.groupby(["temperature", "scope"], sort=False):
        print(f"\ntemperature {temperature}, {scope}")
        print(part.pivot(index="label", columns="model", values="value").to_string())
    return 0
