"""Benchmark: geometry metrics for three SmolLM2-sized models on the 1,024 shipped prompts.

Run from the repository root: `.venv/bin/python -m bench.collapse_bench [--n 1024] [--bf16]`

Measures `collapse.model_geometry` (forward pass of every prompt, pooled states of every
layer, a layer curve, bootstrap intervals at the final layer) plus the Gaussian null, for
SmolLM2-135M-Instruct and two copies whose weights carry small random changes (so each has
its own cache key, as a fine-tuned model would). The first pass runs against an empty cache
folder; the second pass repeats the same calls and reads the results from that cache.
Prints a Markdown section for docs/benchmarks.md and writes it to --out as well.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import core  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
import torch

from core import collapse, models
from core.prompt_sets import load_prompts


def _variant(base: models.LoadedModel, name: str, seed: int) -> models.LoadedModel:
    """Return a copy of `base` with every weight nudged by 0.1% noise, under a new name."""
    model = base.fresh_copy().eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=param.dtype)
            param.add_(noise * 1e-3 * param.abs().mean())
            param.requires_grad_(False)
    spec = replace(base.spec, name=name, label=name)
    return replace(base, model=model, spec=spec)


def _timed(fn) -> tuple[float, float]:
    """Run `fn` and return (wall seconds, CPU seconds of this process, all threads)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu_start


def _measure_all(lms, prompts, settings) -> None:
    for lm in lms:
        result = collapse.model_geometry(lm, prompts, settings)
        collapse.null_geometry(len(prompts), result.dim, settings)


def _forward_all(lms, prompts, settings) -> None:
    for lm in lms:
        collapse.pooled_states(lm, prompts, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024, help="number of prompts")
    parser.add_argument("--n-boot", type=int, default=collapse.CollapseSettings.n_boot)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast forward pass")
    parser.add_argument("--out", default="/tmp/bench_collapse.md")
    args = parser.parse_args()

    base = models.load_model(models.SMOLLM2_NAME)
    lms = [base, _variant(base, "smollm2-variant-a", 1), _variant(base, "smollm2-variant-b", 2)]
    prompts = list(load_prompts(args.n)["text"])
    settings = collapse.CollapseSettings(n_boot=args.n_boot, bf16=args.bf16)
    with tempfile.TemporaryDirectory() as home:
        os.environ["ALIGNMENT_LAB_HOME"] = home  # an empty cache for the first pass
        forward = _timed(lambda: _forward_all(lms, prompts, settings))
        scoring = _timed(lambda: _measure_all(lms, prompts, settings))
        cached = _timed(lambda: _measure_all(lms, prompts, settings))
    first = (forward[0] + scoring[0], forward[1] + scoring[1])

    load = os.getloadavg()
    lines = [
        "## Collapse geometry (`bench/collapse_bench.py`)",
        "",
        f"Three SmolLM2-135M-sized models (the built-in model and two copies with 0.1% weight "
        f"noise), {len(prompts)} shipped prompts, pooling at the last token, layer curve over "
        f"all {base.n_layer + 1} hidden states, {settings.n_boot} bootstrap resamples at the "
        f"final layer, plus the Gaussian null; forward pass in "
        f"{'bfloat16 autocast' if args.bf16 else 'fp32'}.",
        "",
        "| pass | wall seconds, three models | CPU seconds (all threads) | goal (wall) |",
        "|---|---|---|---|",
        f"| first (empty cache) | {first[0]:.1f} | {first[1]:.1f} | under 60 |",
        f"| of which forward passes | {forward[0]:.1f} | {forward[1]:.1f} | |",
        f"| of which metrics, bootstrap and null | {scoring[0]:.1f} | {scoring[1]:.1f} | |",
        f"| again (from the disk cache) | {cached[0]:.2f} | {cached[1]:.2f} | under 1 |",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average "
        f"{load[0]:.1f} at the end (other jobs shared the CPUs).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
