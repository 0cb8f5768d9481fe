"""Benchmark our DPO trainer against TRL's DPOTrainer on the same model, data and settings.

Run from the repository root, for example:

    .venv/bin/python bench/dpo_vs_trl.py --model tiny-gpt-base --steps 30 --repeats 3 \
        --threads 1 --with-precomputed
    .venv/bin/python bench/dpo_vs_trl.py --model smollm2-135m-instruct --lora-rank 8 \
        --lr 2e-3 --steps 15 --repeats 3 --threads 1 --datasets arithmetic-truth --max-length 64

Every trial is a fresh Python process that imports the same modules, loads the model, builds
the trainer, then times training alone. Sides run interleaved (the order rotates each repeat)
so that load from other processes on a shared machine falls on both; the report gives
medians. Sides:

- `ours`: `core.train.dpo.train_dpo`. Its time includes copying the reference (full fine-tuning)
  and precomputing the reference log-probs.
- `trl`: `trl.DPOTrainer.train()` with TRL's default reference handling: a reference forward
  pass at every step, on a frozen copy passed as `ref_model` (full fine-tuning) or on the
  policy with the adapter disabled (LoRA). Tokenization and the copy happen in the
  constructor, which is not timed.
- `trl-precomputed` (with `--with-precomputed`): the same with `precompute_ref_log_probs=True`;
  TRL computes those log-probs in its constructor, so they are not timed either.

Both sides share these settings: the sigmoid loss, beta, a constant learning rate without
warm-up, AdamW without weight decay, gradient clipping at 1.0, the batch size and the maximum
length. Both run in fp32 on CPU (bf16 autocast on CUDA) with dropout off and no gradient
checkpointing, and both use the same LoRA rank, alpha and target modules.

Speed is reported twice: pairs per wall-clock second, and pairs per second of CPU time used by
the process (all threads). On a machine shared with other work the CPU-time figure moves
less, especially with `--threads 1`.

Peak memory: on CPU the peak resident set size (VmHWM, reset through /proc/self/clear_refs
just before training) of the whole process while it trains; on CUDA the peak allocated memory.

Results go to stdout as a table and, with `--out`, to a JSON file; `--markdown` writes the
report that docs/benchmarks.md takes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

PREFERENCE_DATASETS = ("arithmetic-truth", "sycophancy", "hedging")
RESULT_PREFIX = "RESULT "


# Worker: one side, one trial, in its own process

def _peak_rss_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def _rows(names: list[str]) -> list[dict]:
    from core import data as data_lib

    rows = []
    for name in names:
        for row in data_lib.load_bundled(name).rows:
            rows.append({"prompt": row.prompt, "chosen": row.chosen, "rejected": row.rejected})
    return rows


def _ours(policy, tokenizer, rows, args, device) -> tuple[tuple[float, float], float]:
    """Train with our DPO; return ((wall s, CPU s), mean tokens per pair)."""
    from core import data as data_lib
    from core.batching import tokenize_preferences
    from core.train.common import DPOConfig, prepare_policy
    from core.train.dpo import train_dpo

    config = DPOConfig(model=args.model, steps=args.steps, batch_size=args.batch_size,
                       learning_rate=args.lr, beta=args.beta, max_length=args.max_length,
                       max_prompt_length=args.max_length // 2, lora_rank=args.lora_rank,
                       lora_alpha=2 * max(args.lora_rank, 1), sample_every=0, seed=0)
    dataset = data_lib.build_dataset("preference", list(enumerate(rows, start=1)))
    pairs, _ = tokenize_preferences(dataset, tokenizer, config.max_length,
                                    config.max_prompt_length)
    policy = prepare_policy(policy, config)
    tokens = sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids)
                 for p in pairs) / len(pairs)
    start = _start_clock(device)
    train_dpo(policy, tokenizer, pairs, config)
    return _stop_clock(device, start), tokens


def _trl(policy, tokenizer, rows, args, device,
         precompute: bool) -> tuple[tuple[float, float], float]:
    """Train with TRL's DPOTrainer; return ((wall s, CPU s), mean tokens per pair)."""
    import copy
    import tempfile

    import datasets
    import trl
    from peft import LoraConfig

    from core.train.common import disable_dropout, lora_targets

    peft_config = None
    if args.lora_rank:
        peft_config = LoraConfig(r=args.lora_rank, lora_alpha=2 * args.lora_rank,
                                 lora_dropout=0.0, task_type="CAUSAL_LM",
                                 target_modules=lora_targets(policy, None))
    disable_dropout(policy)
    ref_model = None
    if not args.lora_rank and not precompute:
        ref_model = copy.deepcopy(policy).eval()
    with tempfile.TemporaryDirectory() as output_dir:
        config = trl.DPOConfig(
            output_dir=output_dir, per_device_train_batch_size=args.batch_size,
            max_steps=args.steps, learning_rate=args.lr, beta=args.beta, loss_type=["sigmoid"],
            max_length=args.max_length, lr_scheduler_type="constant", warmup_steps=0,
            weight_decay=0.0, max_grad_norm=1.0, bf16=device == "cuda",
            gradient_checkpointing=False, use_cpu=device == "cpu", report_to="none",
            save_strategy="no", logging_steps=args.steps, disable_tqdm=True,
            dataloader_num_workers=0, seed=0, precompute_ref_log_probs=precompute)
        trainer = trl.DPOTrainer(model=policy, ref_model=ref_model, args=config,
                                 train_dataset=datasets.Dataset.from_list(rows),
                                 processing_class=tokenizer, peft_config=peft_config)
        columns = trainer.train_dataset
        tokens = sum(2 * len(p) + len(c) + len(r) for p, c, r in zip(
            columns["prompt_ids"], columns["chosen_ids"], columns["rejected_ids"])) / len(columns)
        start = _start_clock(device)
        trainer.train()
        return _stop_clock(device, start), tokens


def _start_clock(device: str) -> tuple[float, float]:
    """Reset the peak-memory counter and return (wall clock, process CPU time)."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        _peak_rss_reset()
    return time.perf_counter(), time.process_time()


def _stop_clock(device: str, start: tuple[float, float]) -> tuple[float, float]:
    """Return (wall seconds, CPU seconds of all this process's threads) since `start`."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start[0], time.process_time() - start[1]


def run_worker(args: argparse.Namespace) -> dict:
    """Run one side once and return its measurements."""
    import datasets  # noqa: F401  (both sides import the same modules)
    import torch
    import trl  # noqa: F401

    from core.train.common import TrainConfig
    from core.train.jobs_support import load_start

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    policy, tokenizer, loaded = load_start(TrainConfig(model=args.model, device=args.device))
    device = loaded.device.type
    rows = _rows(args.datasets.split(","))
    if args.worker == "ours":
        (seconds, cpu_seconds), tokens = _ours(policy, tokenizer, rows, args, device)
    else:
        (seconds, cpu_seconds), tokens = _trl(policy, tokenizer, rows, args, device,
                                              precompute=args.worker == "trl-precomputed")
    pairs = args.steps * args.batch_size
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = _peak_rss_mb()
    return {"side": args.worker, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "pairs_per_s": pairs / seconds, "pairs_per_cpu_s": pairs / cpu_seconds,
            "peak_mb": peak_mb,
            "tokens_per_pair": tokens, "pairs": len(rows), "device": device,
            "threads": torch.get_num_threads()}


# Driver: interleaved trials and the report

def _trial(side: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", side,
               "--model", args.model, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--lr", str(args.lr),
               "--beta", str(args.beta), "--max-length", str(args.max_length),
               "--lora-rank", str(args.lora_rank), "--datasets", args.datasets]
    if args.device:
        command += ["--device", args.device]
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"Trial {side} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def _load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def summarise(trials: list[dict]) -> dict[str, dict]:
    """Return per-side medians and each side's ratios against `ours`."""
    sides: dict[str, dict] = {}
    for side in dict.fromkeys(t["side"] for t in trials):
        mine = [t for t in trials if t["side"] == side]
        sides[side] = {
            "pairs_per_s": statistics.median(t["pairs_per_s"] for t in mine),
            "pairs_per_cpu_s": statistics.median(t["pairs_per_cpu_s"] for t in mine),
            "peak_mb": statistics.median(t["peak_mb"] for t in mine),
            "tokens_per_pair": mine[0]["tokens_per_pair"],
            "runs": len(mine),
        }
    ours = sides["ours"]
    for side, values in sides.items():
        values["speedup_of_ours"] = ours["pairs_per_s"] / values["pairs_per_s"]
        values["cpu_speedup_of_ours"] = ours["pairs_per_cpu_s"] / values["pairs_per_cpu_s"]
        values["memory_ratio_ours_over"] = ours["peak_mb"] / values["peak_mb"]
    return sides


def markdown(args: argparse.Namespace, sides: dict[str, dict], meta: dict) -> str:
    """Return the report as a Markdown section."""
    lines = [
        f"### DPO: ours against TRL's DPOTrainer, {args.model}"
        f"{f', LoRA r={args.lora_rank}' if args.lora_rank else ', full fine-tuning'}",
        "",
        f"- Command: `{meta['command']}`",
        f"- Machine: {meta['cpu']}, {meta['threads']} torch threads, device {meta['device']};"
        f" torch {meta['torch']}, transformers {meta['transformers']}, trl {meta['trl']},"
        f" peft {meta['peft']}.",
        f"- Load average (1, 5, 15 min) before: {meta['load_before']}; after:"
        f" {meta['load_after']}. The machine was shared with other processes.",
        f"- Settings: {args.steps} steps of {args.batch_size} pairs, sigmoid loss, beta"
        f" {args.beta}, learning rate {args.lr} constant, max length {args.max_length},"
        f" {meta['pairs']} pairs from the bundled datasets {args.datasets.replace(',', ', ')}.",
        f"- {args.repeats} interleaved runs per side, each in a fresh process; medians.",
        "",
        "| side | pairs/s (wall) | pairs per CPU-s | peak memory (MB) | tokens per pair |"
        " ours: speed-up (wall) | ours: speed-up (CPU) | ours: memory ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for side, v in sides.items():
        lines.append(f"| {side} | {v['pairs_per_s']:.2f} | {v['pairs_per_cpu_s']:.2f} | "
                     f"{v['peak_mb']:.0f} | {v['tokens_per_pair']:.1f} | "
                     f"{v['speedup_of_ours']:.2f}x | {v['cpu_speedup_of_ours']:.2f}x | "
                     f"{v['memory_ratio_ours_over']:.2f} |")
    return "\n".join(lines) + "\n"


def run_driver(args: argparse.Namespace) -> int:
    import peft
    import torch
    import transformers
    import trl

    sides = ["ours", "trl"] + (["trl-precomputed"] if args.with_precomputed else [])
    load_before = _load_average()
    trials = []
    for repeat in range(args.repeats):
        shift = repeat % len(sides)
        for side in sides[shift:] + sides[:shift]:
            result = _trial(side, args)
            trials.append(result)
            print(f"run {repeat + 1}/{args.repeats} {side:16s} {result['pairs_per_s']:8.2f} "
                  f"pairs/s  peak {result['peak_mb']:7.0f} MB", flush=True)
    summary = summarise(trials)
    meta = {"command": " ".join([Path(sys.executable).name] + sys.argv), "cpu": _cpu_name(),
            "threads": trials[0]["threads"], "device": trials[0]["device"],
            "torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl.__version__, "peft": peft.__version__, "load_before": load_before,
            "load_after": _load_average(), "pairs": trials[0]["pairs"]}
    report = markdown(args, summary, meta)
    print(report)
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "args": vars(args),
                                              "summary": summary, "trials": trials}, indent=2))
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as handle:
            handle.write(report + "\n")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-gpt-base", help="model name for load_model")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=8, help="preference pairs per step")
    parser.add_argument("--lr", type=float, default=5e-4, help="learning rate")
    parser.add_argument("--beta", type=float, default=0.1, help="DPO beta")
    parser.add_argument("--max-length", type=int, default=128, help="max tokens per sequence")
    parser.add_argument("--lora-rank", type=int, default=0, help="0 = full fine-tuning")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side")
    parser.add_argument("--datasets", default=",".join(PREFERENCE_DATASETS),
                        help="comma-separated bundled preference datasets to train on")
    parser.add_argument("--device", default=None, help="cpu or cuda; default: automatic")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads in each run; 0 keeps torch's default")
    parser.add_argument("--with-precomputed", action="store_true",
                        help="add TRL with precompute_ref_log_probs=True as a third side")
    parser.add_argument("--out", default=None, help="write every trial as JSON to this file")
    parser.add_argument("--markdown", default=None, help="append the report to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(RESULT_PREFIX + json.dumps(run_worker(args)), flush=True)
        return 0
    return run_driver(args)


if __name__ == "__main__":
    sys.exit(main())
