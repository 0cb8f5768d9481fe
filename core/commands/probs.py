"""`probs`: the next-token distribution of one or more models after a prompt."""

from __future__ import annotations

from dataclasses import asdict

from core import inference, models
from core.cli import emit_json, model_names


def register(subparsers) -> None:
    parser = subparsers.add_parser("probs", help="Show next-token probabilities after a prompt.")
    parser.add_argument("model", help="Model name (see `models`); several separated by commas.")
    parser.add_argument("prompt", help="The text to continue, e.g. 'Two plus two equals'.")
    parser.add_argument("--top", type=int, default=10, help="Number of top tokens to list.")
    parser.add_argument("--candidates", default=" four, five, fish",
                        help="Comma-separated candidate answers to score exactly "
                             "(keep the leading space: ' four').")
    parser.add_argument("--chat", action="store_true", help="Wrap the prompt in the chat template.")
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    parser.set_defaults(func=run)


def run(args) -> int:
    candidates = [c for c in args.candidates.split(",") if c.strip()]
    names = model_names(args.model)
    lms = [models.load_model(name) for name in names]
    results = inference.next_token_distributions(lms, args.prompt, top_k=args.top,
                                                 candidates=candidates, chat=args.chat)
    output = [{"model": name, "entropy_bits": result.entropy_bits, **asdict(result)}
              for name, result in zip(names, results)]
    if args.json:
        emit_json(output if len(output) > 1 else output[0])
        return 0
    for item in output:
        print(f"{item['model']}  (entropy {item['entropy_bits']:.2f} bits)")
        for tok in item["top"]:
            print(f"  {tok['token']!r:<16} {tok['prob']:.4f}")
        for cand in item["candidates"]:
            print(f"  candidate {cand['text']!r:<14} {cand['prob']:.4f}  tokens {cand['tokens']}")
    return 0
