"""Benchmark: model loading and next-token distributions on SmolLM2-sized models.

Run from the repository root: `.venv/bin/python -m bench.inference_bench [--repeats 15]`

Measures, in one process:
- the cached SmolLM2 load (`load_model` after the one-time GGUF conversion), median of 5;
- `next_token_distribution` for one prompt (top 10 plus five candidate answers) on three
  SmolLM2-sized models, the base and its shipped SFT and DPO versions when present, else
  the base three times; the time for all three together, median over repeats;
- a plain transformers forward pass for the same three models, as the floor to compare with.
Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import core  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
import torch

from core import inference, models

PROMPT = "Two plus two equals"
CANDIDATES = [" four", " five", " Four", " 4", " fish"]


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 = default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    models.convert_smollm2()  # the one-time conversion is not what is measured
    load_s = _median_seconds(lambda: models.load_model(models.SMOLLM2_NAME), 5)

    names = [n for n in models.default_model_names(3) if n.startswith("smollm2")]
    names = (names + [models.SMOLLM2_NAME] * 3)[:3]
    lms = [models.load_model(n) for n in names]
    for lm in lms:  # warm-up
        inference.next_token_distribution(lm, PROMPT, candidates=CANDIDATES)

    def ours():
        for lm in lms:
            inference.next_token_distribution(lm, PROMPT, top_k=10, candidates=CANDIDATES)

    ids = torch.tensor([lms[0].tokenizer(PROMPT)["input_ids"]])

    @torch.no_grad()
    def plain_forward():
        for lm in lms:
            lm.model(ids).logits[0, -1].float().log_softmax(-1)

    ours_s = _median_seconds(ours, args.repeats)
    plain_s = _median_seconds(plain_forward, args.repeats)
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"models: {', '.join(names)}")
    print("| measure | median | target |")
    print("|---|---|---|")
    print(f"| cached SmolLM2 load | {load_s:.2f} s | < 3 s |")
    print(f"| next-token distribution, 3 models (top 10 + 5 candidates) | {ours_s:.3f} s | < 0.3 s |")
    print(f"| plain forward pass, 3 models (floor) | {plain_s:.3f} s | |")


if __name__ == "__main__":
    main()
