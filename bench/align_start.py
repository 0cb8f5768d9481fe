"""Time an Align preset from pressing Start to the finished run, through the job system.

Run from the repository root: `.venv/bin/python -m bench.align_start [PRESET ...]`
(default: the SmolLM2 and tiny-GPT arithmetic-truth DPO presets with the NLL term).

Each preset is submitted with `jobs.submit`, as the Align page's Start button does, in a
temporary lab home, and timed until `jobs.wait` reports the run landed. The page starts a
standby job process when it loads, so by default a ready standby is waited for first, as it
would be while the lecturer picks the settings; `--cold` skips it. Prints the seconds and
P(preferred answer) before and after for the preset's first prompt.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

DEFAULT = ("smollm2-dpo-arithmetic", "tiny-gpt-dpo-arithmetic")


def _wait_for_standby(jobs) -> None:
    jobs.ensure_standby("cpu")
    registry = jobs._standby_registry("cpu")
    deadline = time.monotonic() + 120
    while not (jobs._idle_standby(registry) or {}).get("ready"):
        if time.monotonic() > deadline:
            raise RuntimeError("The standby process did not become ready within 120 s.")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", default=list(DEFAULT))
    parser.add_argument("--cold", action="store_true", help="Do not wait for a standby process.")
    args = parser.parse_args()
    os.environ["ALIGNMENT_LAB_HOME"] = tempfile.mkdtemp(prefix="align-start-")

    import core  # noqa: F401  (sets the OpenMP wait policy before torch loads)
    from core import jobs
    from core.train.presets import preset_config

    for name in args.presets:
        config = preset_config(name)
        kind = "sft" if "-sft-" in name else "dpo"
        if not args.cold:
            _wait_for_standby(jobs)
        load = os.getloadavg()[0]
        start = time.perf_counter()
        job_id = jobs.submit(kind, config, owner="bench", device="cpu")
        info = jobs.wait(job_id, timeout_s=900)
        seconds = time.perf_counter() - start
        before = info.result.get("probs/before", {})
        after = info.result.get("probs/after", {})
        prompt = next(iter(before), None)
        print(f"{name}: {info.state} in {seconds:.1f} s from Start "
              f"({'cold' if args.cold else 'standby ready'}, load average {load:.1f})")
        if prompt is not None:
            print(f"  {prompt!r}: P(chosen) {before[prompt]} -> {after[prompt]}")
    jobs.stop_standby()


if __name__ == "__main__":
    main()
