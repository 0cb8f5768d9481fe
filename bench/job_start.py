"""Time from Submit to a job's first metric event, with and without a standby process.

A cold job starts a new Python process that imports torch, transformers and the trainer
before it can load the model. A standby process has done those imports already. The job
is a 1-step DPO run of a tiny random GPT-2 on the bundled arithmetic-truth pairs, in a
temporary lab home.

Run: `.venv/bin/python -m bench.job_start [--repeats 3]`. Prints one line per run and the
median of each mode.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

CONFIG = {"dataset": "arithmetic-truth", "steps": 1, "batch_size": 4, "lora_rank": 0,
          "max_length": 32, "max_prompt_length": 24, "sample_every": 0}


def time_to_first_event(jobs, model: str, warm: bool) -> float:
    """Submit one job and return the seconds until its first metric event is on disk."""
    if warm:
        jobs.ensure_standby("cpu")
        while not (jobs._idle_standby(jobs._standby_registry("cpu")) or {}).get("ready"):
            time.sleep(0.05)
    start = time.monotonic()
    job_id = jobs.submit("dpo", {**CONFIG, "model": model}, owner="bench", device="cpu")
    while not jobs.read_events(job_id)[0]:
        time.sleep(0.02)
    elapsed = time.monotonic() - start
    info = jobs.wait(job_id, timeout_s=300)
    if info.state != "done":
        raise RuntimeError(f"benchmark job {job_id} ended {info.state}: {info.error}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="job-start-bench-"))
    os.environ.update(ALIGNMENT_LAB_HOME=str(home), ALIGNMENT_LAB_BUILTINS="0",
                      ALIGNMENT_LAB_DEVICE="cpu")
    from core import jobs
    from tests import tiny

    model = tiny.save_tiny_family(home / "runs")[0]
    results: dict[str, list[float]] = {"cold": [], "standby": []}
    try:
        for repeat in range(args.repeats):
            for mode, values in results.items():
                seconds = time_to_first_event(jobs, model, warm=mode == "standby")
                values.append(seconds)
                print(f"run {repeat + 1} | {mode:7s} | first event after {seconds:5.2f} s")
    finally:
        jobs.stop_standby()
    for mode, values in results.items():
        print(f"median {mode:7s} | {statistics.median(values):5.2f} s over {len(values)} runs")


if __name__ == "__main__":
    main()
