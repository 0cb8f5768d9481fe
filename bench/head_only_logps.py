"""Time completion log-probs with the LM head at every position against completion positions only.

    .venv/bin/python -m bench.head_only_logps [--model tiny-gpt-base] [--lora-rank 0] [--rounds 15]

One DPO-shaped batch (8 preference pairs, 16 rows) from a bundled dataset goes through a
forward and backward pass two ways: `token_logps` builds logits (B, T, V) at every position
(the full path), and `completion_token_logps` runs the head on the N completion positions.
The two alternate in each round, so a change in machine load hits both alike. Reports the median CPU seconds per pass
(`time.process_time`, one torch thread), the max abs difference of the summed log-probs and
the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import core  # noqa: F401  (sets OMP_WAIT_POLICY=PASSIVE before torch loads)
import torch

from core import data, models
from core.batching import collate_preferences, tokenize_preferences
from core.train.common import DPOConfig, prepare_policy
from core.train.logps import completion_token_logps, plain_head, token_logps


def full_path(policy, batch) -> torch.Tensor:
    per_token = token_logps(policy, batch["input_ids"], batch["attention_mask"])
    return per_token * batch["completion_mask"][:, 1:]  # (B, T-1)


def head_only_path(policy, batch) -> torch.Tensor:
    return completion_token_logps(policy, batch["input_ids"], batch["attention_mask"],
                                  batch["completion_mask"])  # (B, T-1)


def time_pass(path, policy, batch) -> float:
    """Return the CPU seconds of one forward and backward pass of `path`."""
    start = time.process_time()
    path(policy, batch).sum().backward()
    seconds = time.process_time() - start
    policy.zero_grad(set_to_none=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-gpt-base", help="model name for core.models.load_model")
    parser.add_argument("--lora-rank", type=int, default=0, help="0 = full fine-tuning")
    parser.add_argument("--dataset", default="sycophancy", help="bundled preference dataset")
    parser.add_argument("--pairs", type=int, default=8, help="preference pairs in the batch")
    parser.add_argument("--rounds", type=int, default=15, help="timed passes of each path")
    args = parser.parse_args()

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    loaded = models.load_model(args.model, device="cpu")
    policy = prepare_policy(loaded.model, DPOConfig(lora_rank=args.lora_rank))
    pairs = tokenize_preferences(data.load_bundled(args.dataset), loaded.tokenizer, 128, 64)[0]
    batch = collate_preferences(pairs[:args.pairs], loaded.tokenizer.pad_token_id)
    n_completion = int(batch["completion_mask"][:, 1:].sum())
    assert plain_head(policy) is not None, "this model takes the full path either way"

    with torch.no_grad():
        diff = (full_path(policy, batch).sum(-1) - head_only_path(policy, batch).sum(-1))
    paths = {"full": full_path, "head-only": head_only_path}
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for name, path in paths.items():  # one untimed warm-up pass each
        time_pass(path, policy, batch)
    for round_index in range(args.rounds):
        order = list(paths) if round_index % 2 == 0 else list(paths)[::-1]
        for name in order:
            seconds[name].append(time_pass(paths[name], policy, batch))

    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"model {args.model}, lora_rank {args.lora_rank}, batch {tuple(batch['input_ids'].shape)}"
          f", completion tokens {n_completion}, vocab {policy.get_output_embeddings().out_features}")
    print(f"max abs diff of summed log-probs: {diff.abs().max().item():.2e}")
    for name, median in medians.items():
        print(f"{name:>9}: median {median:.4f} CPU s per forward+backward over {args.rounds} "
              f"passes (min {min(seconds[name]):.4f}, max {max(seconds[name]):.4f})")
    print(f"head-only / full: {medians['head-only'] / medians['full']:.3f}")
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
