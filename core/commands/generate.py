"""`generate`: sample or greedily decode continuations of a prompt."""

from __future__ import annotations

from dataclasses import asdict

from core import inference, models
from core.cli import emit_json, model_names


def register(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="Generate continuations of a prompt.")
    parser.add_argument("model", help="Model name (see `models`); several separated by commas.")
    parser.add_argument("prompt", help="The text to continue.")
    parser.add_argument("--max-new-tokens", type=int, default=40, help="Tokens to generate.")
    parser.add_argument("--greedy", action="store_true", help="Always take the likeliest token.")
    parser.add_argument("--temperature", type=float, default=1.0, help="Sampling temperature (> 0).")
    parser.add_argument("--top-k", type=int, default=0, help="Sample from the k likeliest; 0 = off.")
    parser.add_argument("--top-p", type=float, default=1.0, help="Nucleus sampling mass in (0, 1].")
    parser.add_argument("-n", "--samples", type=int, default=1, help="Continuations per model.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed; same seed, same text.")
    parser.add_argument("--chat", action="store_true", help="Wrap the prompt in the chat template.")
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    parser.set_defaults(func=run)


def run(args) -> int:
    config = inference.GenerationConfig(
        max_new_tokens=args.max_new_tokens, do_sample=not args.greedy,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        n_samples=args.samples, seed=args.seed, chat=args.chat,
    )
    config.validate()
    output = []
    for name in model_names(args.model):
        lm = models.load_model(name)
        output += [{"model": name, **asdict(g)} for g in inference.generate(lm, args.prompt, config)]
    if args.json:
        emit_json(output)
        return 0
    for item in output:
        print(f"[{item['model']}] {item['prompt']}{item['text']}")
    return 0
