"""Tests for `python -m core.cli train` on a tiny model from the test run store."""

from __future__ import annotations

import json

import pytest

from core import checkpoints, cli, store


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_dpo_lands_run(tiny_lab, capsys):
    base = tiny_lab[0]
    code, out, _ = run_cli(capsys, "train", "dpo", "--model", base, "--steps", "2",
                           "--batch-size", "4", "--nll-weight", "1", "--json")
    assert code == 0
    summary = json.loads(out)
    meta = store.read_run(summary["run_id"])
    assert meta["stage"] == "dpo"
    assert meta["parent"] == base
    assert meta["weights"] == "full"
    assert len(meta["data_hash"]) == 64
    assert summary["steps"] == 2


def test_sft_lora_to_folder(tiny_lab, capsys, tmp_path):
    target = tmp_path / "tiny-sft"
    code, _, err = run_cli(capsys, "train", "sft", "--model", tiny_lab[0], "--dataset",
                             "tiny-chat", "--steps", "2", "--lora-rank", "4", "--out",
                             str(target))
    assert code == 0, err
    assert "step    0" in err
    meta = checkpoints.read_meta(target)
    assert meta["weights"] == "lora"
    assert meta["stage"] == "sft"
    assert (target / "adapter_model.safetensors").is_file()
    assert (target / "tokenizer.json").is_file()


def test_invalid_beta_rejected(tiny_lab, capsys):
    code, _, err = run_cli(capsys, "train", "dpo", "--model", tiny_lab[0], "--beta", "0")
    assert code == 2
    assert "beta=0" in err


def test_preset_for_other_method_rejected(tiny_lab, capsys):
    code, _, err = run_cli(capsys, "train", "sft", "--preset", "tiny-gpt-dpo-arithmetic")
    assert code == 2
    assert "is for dpo" in err


@pytest.mark.parametrize("item", ["warmup_steps", "nope=1"])
def test_bad_set_rejected(tiny_lab, capsys, item):
    code, _, err = run_cli(capsys, "train", "sft", "--model", tiny_lab[0], "--set", item)
    assert code == 2
    assert "error:" in err
