"""Time the Align presets end to end and report P(answer) before and after.

Run: `python -m bench.align_presets [PRESET ...]` (default: the two SmolLM2 arithmetic presets,
with and without the NLL term). Each preset runs through its trainer's `run_job`, as a job
process does, from loading the model to saving the weights. Prints one line per step and a
summary per preset: wall seconds, CPU seconds, P(chosen) for "Two plus two equals" before and
after. CPU seconds are printed because wall time on a shared machine depends on other load.
"""

from __future__ import annotations

import argparse
import importlib
import json
import tempfile
import time

from core.train.presets import PRESETS, preset_config

DEFAULT = ("smollm2-dpo-arithmetic", "smollm2-dpo-arithmetic-plain")
PROBE = "Two plus two equals"


class BenchContext:
    """A job context that prints events and never stops."""

    def __init__(self, start: float):
        self.output_dir = tempfile.mkdtemp(prefix="align-bench-")
        self.start = start

    def emit(self, event: dict) -> None:
        if "loss/train" in event:
            print(f"  {time.perf_counter() - self.start:6.1f}s step {event['step']:>3} "
                  f"loss {event['loss/train']:.3f} P(chosen) {event.get('probs/chosen', 0):.3f} "
                  f"logps/chosen {event.get('logps/chosen', 0):.2f}", flush=True)

    def sample(self, step: int, texts: list[str]) -> None:
        pass

    @staticmethod
    def should_stop() -> bool:
        return False


def run(name: str, overrides: dict) -> dict:
    preset = PRESETS[name]
    start, cpu_start = time.perf_counter(), time.process_time()
    run_job = importlib.import_module(f"core.train.{preset.method}").run_job
    summary = run_job(preset_config(name, **overrides), BenchContext(start))
    return {
        "preset": name,
        "wall_s": round(time.perf_counter() - start, 1),
        "cpu_s": round(time.process_time() - cpu_start, 1),
        "p_before": summary["probs/before"]["chosen"].get(PROBE),
        "p_after": summary["probs/after"]["chosen"].get(PROBE),
        "steps": summary["steps"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", default=list(DEFAULT),
                        help=f"preset names (default: {' '.join(DEFAULT)})")
    parser.add_argument("--model", default=None, help="starting model instead of the preset's")
    args = parser.parse_args()
    overrides = {"model": args.model} if args.model else {}
    unknown = [name for name in args.presets if name not in PRESETS]
    if unknown:
        parser.error(f"unknown preset(s) {unknown}; choose from {', '.join(PRESETS)}")
    for name in args.presets:
        print(name, flush=True)
        print(json.dumps(run(name, overrides)), flush=True)


if __name__ == "__main__":
    main()
