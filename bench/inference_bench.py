"""Benchmark: model loading and next-token distributions on SmolLM2-sized models.

Run from the repository root: `.venv/bin/python -m bench.inference_bench [--repeats 21]`

Measures, in one process:
- the cached SmolLM2 load (`load_model` after the one-time GGUF conversion), median of 5;
- the next-token distribution for one prompt (top 10 plus five candidate answers) on three
  SmolLM2-sized models, the base and its shipped SFT and DPO versions when present, else
  the base three times: `inference.next_token_distributions`, which the Probabilities page
  and the CLI call and which runs the models concurrently, beside a sequential loop over
  `next_token_distribution`; the time for all three together, median over repeats;
- a plain transformers forward pass for the same three models one after another, the
  floor of the sequential path.
The three ways alternate within each repeat, so load changes hit them alike.
Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import core  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
import torch

from core import inference, models

PROMPT = "Two plus two equals"
CANDIDATES = [" four", " five", " Four", " 4", " fish"]


def _median_seconds(fns: dict, repeats: int) -> dict[str, float]:
    """Time each function `repeats` times, interleaved; return the median seconds of each."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 = default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    models.convert_smollm2()  # the one-time conversion is not what is measured
    load_s = _median_seconds({"load": lambda: models.load_model(models.SMOLLM2_NAME)}, 5)["load"]

    names = [n for n in models.default_model_names(3) if n.startswith("smollm2")]
    names = (names + [models.SMOLLM2_NAME] * 3)[:3]
    lms = [models.load_model(n) for n in names]
    ids = torch.tensor([lms[0].tokenizer(PROMPT)["input_ids"]])

    def concurrent():
        inference.next_token_distributions(lms, PROMPT, top_k=10, candidates=CANDIDATES)

    def sequential():
        for lm in lms:
            inference.next_token_distribution(lm, PROMPT, top_k=10, candidates=CANDIDATES)

    @torch.no_grad()
    def plain_forward():
        for lm in lms:
            lm.model(ids).logits[0, -1].float().log_softmax(-1)

    fns = {"concurrent": concurrent, "sequential": sequential, "plain": plain_forward}
    for fn in fns.values():  # warm-up, which also starts the worker threads
        fn()
    medians = _median_seconds(fns, args.repeats)
    ratio = medians["concurrent"] / medians["sequential"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"models: {', '.join(names)}; {args.repeats} repeats")
    print("| measure | median | goal |")
    print("|---|---|---|")
    print(f"| cached SmolLM2 load | {load_s:.2f} s | < 3 s |")
    print(f"| next-token distribution, 3 models, `next_token_distributions` (concurrent) "
          f"| {medians['concurrent']:.3f} s | < 0.3 s |")
    print(f"| the same, one model after another | {medians['sequential']:.3f} s | |")
    print(f"| plain forward pass, 3 models one after another | {medians['plain']:.3f} s | |")
    print(f"| concurrent / sequential | {ratio:.2f} | |")


if __name__ == "__main__":
    main()
