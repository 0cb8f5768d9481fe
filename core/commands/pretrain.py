"""`python -m core.cli pretrain`: pretrain a tiny GPT on the weighted toy internet.

Examples:

    python -m core.cli pretrain                          # land a run in the run store
    python -m core.cli pretrain --off orwell_1984 --off political_memes --steps 300
    python -m core.cli pretrain --tokenizer train --out assets/models/tiny-gpt-base
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from core import corpus, tinygpt
from core.cli import progress_printers
from core.pretrain import PretrainConfig

DEFAULTS = PretrainConfig()


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pretrain", help="pretrain a tiny GPT from scratch on the toy internet",
        description="Pretrain a tiny GPT on the bundled corpus, with source weights you choose, "
                    "and report P(' four') and P(' five') after 'Two plus two equals' beside "
                    "the corpus shares.",
    )
    parser.add_argument("--preset", default=DEFAULTS.preset, choices=sorted(tinygpt.PRESETS),
                        help="model size preset (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=DEFAULTS.steps,
                        help="optimizer steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size,
                        help="sequences per step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr,
                        help="peak learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed")
    parser.add_argument("--weight", action="append", default=[], metavar="SOURCE=W",
                        help="weight of a corpus source, 0 (off) to 10; repeatable")
    parser.add_argument("--off", action="append", default=[], metavar="SOURCE",
                        help="switch a corpus source off (weight 0); repeatable")
    parser.add_argument("--tokenizer", default=DEFAULTS.tokenizer,
                        help="'shipped' (the base model's), 'train' (a new BPE on this corpus) "
                             "or a tokenizer folder (default: %(default)s)")
    parser.add_argument("--vocab-size", type=int, default=DEFAULTS.vocab_size,
                        help="maximum vocabulary when the tokenizer is trained")
    parser.add_argument("--eval-every", type=int, default=DEFAULTS.eval_every,
                        help="steps between held-out loss evaluations")
    parser.add_argument("--sample-every", type=int, default=DEFAULTS.sample_every,
                        help="steps between sample generations; 0 switches them off")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: automatic)")
    parser.add_argument("--out", default=None,
                        help="save the checkpoint in this folder instead of the run store")
    parser.add_argument("--name", default=None, help="display name of the run")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=handle)


def parse_weights(pairs: list[str], off: list[str]) -> dict[str, float]:
    weights: dict[str, float] = {}
    for pair in pairs:
        source, sep, value = pair.partition("=")
        try:
            weights[source.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"--weight {pair!r} is invalid; write SOURCE=NUMBER, "
                             f"for example orwell_1984=2")
    for source in off:
        weights[source.strip()] = 0.0
    corpus.check_weights(weights)
    return weights


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "preset": args.preset, "steps": args.steps, "batch_size": args.batch_size,
        "lr": args.lr, "seed": args.seed, "weights": parse_weights(args.weight, args.off),
        "tokenizer": args.tokenizer, "vocab_size": args.vocab_size,
        "eval_every": args.eval_every, "sample_every": args.sample_every,
        "device": args.device,
    }


def format_event(event: dict[str, Any]) -> str | None:
    if "loss/train" not in event or "tokens_per_s" not in event:
        return None
    parts = [f"step {event['step']:>5}", f"loss {event['loss/train']:.3f}"]
    if "loss/val" in event:
        parts.append(f"val {event['loss/val']:.3f}")
    parts += [f"lr {event['lr']:.2e}", f"{event['tokens_per_s']:,.0f} tok/s",
              f"eta {event['eta_s']:.0f}s"]
    return " | ".join(parts)


def handle(args: argparse.Namespace) -> int:
    from core import pretrain

    try:
        config = build_config(args)
        cfg = pretrain.PretrainConfig.from_dict(config)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    on_event, on_sample = progress_printers(format_event, quiet=args.json)

    if args.out:
        result = pretrain.pretrain(cfg, on_event=on_event, on_sample=on_sample)
        if not result.is_main_process:  # under `accelerate launch`, the main process saves
            return 0
        folder = pretrain.save_result(result, args.out)
        summary = {"checkpoint": str(folder), **result.metrics}
    else:
        from core import jobs, store

        if args.name:
            config["name"] = args.name
        run_id = jobs.run_inline("pretrain", config, on_event=on_event)
        summary = {"run_id": run_id, **store.read_run(run_id).get("metrics", {})}
    print_summary(summary, args.json)
    return 0


def print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    where = summary.get("checkpoint") or f"run {summary.get('run_id')}"
    print(f"saved {where}")
    print(f"P(' four' | 'Two plus two equals') = {summary['probe/p_four']:.3f}"
          f"   corpus share of four = {summary['corpus/share_four']:.3f}")
    print(f"P(' five' | 'Two plus two equals') = {summary['probe/p_five']:.3f}"
          f"   corpus share of five = {summary['corpus/share_five']:.3f}")
