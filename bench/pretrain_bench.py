"""Benchmark the pretraining loop against a minimal plain-PyTorch loop, and its MFU.

    .venv/bin/python -m bench.pretrain_bench [--preset cpu] [--steps 30] [--rounds 2]

Both loops train the same preset on the same packed corpus with the same batch size,
optimizer, learning-rate schedule and gradient clipping; they alternate for `--rounds`
rounds so that a change in machine load hits both alike. Throughput counts the steps after
`--warmup` steps. Model FLOP utilisation (MFU) divides the loop's model FLOPs per second
(6 x parameters + attention, per token) by the FLOP/s of a large fp32 matrix multiply
measured in the same run. Writes a Markdown report to `--report`.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import core  # noqa: F401  (sets OMP_WAIT_POLICY=PASSIVE before torch loads)
import torch

from core import corpus, tinygpt
from core import pretrain as pt


def plain_loop(config: pt.PretrainConfig, train, tokenizer, warmup: int) -> float:
    """The same training step written with nothing but torch; returns tokens/s."""
    block = tinygpt.get_preset(config.preset).block_size
    torch.manual_seed(config.seed)
    model = tinygpt.build_model(config.preset, tokenizer).train()
    optimizer = pt.make_optimizer(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    for step in range(config.steps):
        if step == warmup:
            start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = pt.lr_at(step, config)
        x, y = pt.get_batch(train, config.batch_size, block, generator)
        loss = pt.causal_lm_loss(model, x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
    return config.batch_size * block * (config.steps - warmup) / (time.perf_counter() - start)


def our_loop(config: pt.PretrainConfig, warmup: int) -> float:
    """core.pretrain.pretrain with its default logging; returns tokens/s after `warmup`."""
    stamps: dict[int, float] = {}

    def on_event(event: dict) -> None:
        stamps.setdefault(event["step"], time.perf_counter())

    pt.pretrain(config, on_event=on_event)
    first = min(s for s in stamps if s >= warmup)
    block = tinygpt.get_preset(config.preset).block_size
    return config.batch_size * block * (config.steps - first) / (stamps[config.steps] - stamps[first])


def matmul_flops(n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of an n x n fp32 matrix multiply on this CPU (best of `repeats`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def flops_per_token(config: pt.PretrainConfig, n_params: int) -> float:
    """Training FLOPs per token: 6N for the weights plus 12 * layers * width * context."""
    size = tinygpt.get_preset(config.preset)
    return 6 * n_params + 12 * size.n_layer * size.n_embd * size.block_size


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--report", default="/tmp/bench_pretrain.md")
    args = parser.parse_args()
    where = machine()

    config = pt.PretrainConfig(preset=args.preset, steps=args.steps, eval_every=10**9,
                               sample_every=0, device="cpu", tokenizer="shipped")
    built = corpus.build_corpus(seed=config.seed)
    tokenizer = pt.load_tokenizer(config, built)
    train, _ = pt.split_corpus(built, tokenizer, config.val_fraction)
    n_params = tinygpt.count_parameters(tinygpt.build_model(config.preset, tokenizer))

    ours, plain, peaks = [], [], []
    for _ in range(args.rounds):
        peaks.append(matmul_flops())
        plain.append(plain_loop(config, train, tokenizer, args.warmup))
        ours.append(our_loop(config, args.warmup))
    peak = max(peaks)
    per_token = flops_per_token(config, n_params)
    best_ours, best_plain = max(ours), max(plain)
    rows = [
        f"| plain PyTorch loop | {best_plain:,.0f} | {best_plain * per_token / peak:.1%} |",
        f"| core.pretrain (accelerate, events) | {best_ours:,.0f} | "
        f"{best_ours * per_token / peak:.1%} |",
    ]
    report = "\n".join([
        "## Pretraining throughput",
        "",
        f"Machine: {where}.",
        f"Method: `python bench/pretrain_bench.py --preset {args.preset} --steps {args.steps} "
        f"--rounds {args.rounds}`. Preset `{args.preset}` ({n_params:,} parameters), batch "
        f"{config.batch_size} x {tinygpt.get_preset(args.preset).block_size} tokens, fp32. "
        f"The loops alternate {args.rounds} times; the table gives the best round of each, "
        f"counting steps after the first {args.warmup}. MFU = tokens/s x "
        f"{per_token / 1e6:.2f} MFLOP per token / {peak / 1e9:.1f} GFLOP/s (best 2048 x 2048 "
        "fp32 matmul in the same run).",
        "",
        "| loop | tokens/s | MFU |",
        "|---|---|---|",
        *rows,
        "",
        f"Overhead of our loop: {best_plain / best_ours - 1:+.1%} time per token "
        f"(every round: plain {', '.join(f'{v:,.0f}' for v in plain)}; "
        f"ours {', '.join(f'{v:,.0f}' for v in ours)} tokens/s).",
        "",
    ])
    Path(args.report).write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
