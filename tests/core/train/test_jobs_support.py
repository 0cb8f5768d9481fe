"""Tests for core/train/jobs_support.py through the trainers' run_job."""

from __future__ import annotations

import pytest

from core.data import DataError
from core.train import dpo, sft


class Ctx:
    def __init__(self, output_dir, stop_after: int | None = None):
        self.output_dir = output_dir
        self.events: list[dict] = []
        self.samples: list[tuple[int, list[str]]] = []
        self.stop_after = stop_after

    def emit(self, event: dict) -> None:
        self.events.append(event)

    def sample(self, step: int, texts: list[str]) -> None:
        self.samples.append((step, texts))

    def should_stop(self) -> bool:
        steps = sum(1 for e in self.events if "loss/train" in e)
        return self.stop_after is not None and steps >= self.stop_after


def test_dpo_job_lora(tiny_lab, tmp_path):
    ctx = Ctx(tmp_path)
    summary = dpo.run_job({"model": tiny_lab[0], "steps": 3, "batch_size": 4, "lora_rank": 4,
                           "sample_every": 2, "nll_weight": 1.0}, ctx)
    assert (tmp_path / "adapter_model.safetensors").is_file()
    assert summary["run"]["weights"] == "lora"
    assert summary["run"]["stage"] == "dpo"
    assert summary["run"]["parent"] == tiny_lab[0]
    assert set(summary["probs/before"]) == {"chosen", "rejected"}
    assert "Two plus two equals" in summary["probs/after"]["chosen"]
    assert ctx.events[0]["data/rows"] == 12
    assert [step for step, _ in ctx.samples] == [1]
    assert summary["steps"] == 3


def test_ipo_job_stage(tiny_lab, tmp_path):
    summary = dpo.run_job({"model": tiny_lab[0], "steps": 1, "batch_size": 2,
                           "loss_type": "ipo"}, Ctx(tmp_path))
    assert summary["run"]["stage"] == "ipo"


def test_cancel_saves_nothing(tiny_lab, tmp_path):
    summary = sft.run_job({"model": tiny_lab[0], "dataset": "tiny-chat", "steps": 10},
                          Ctx(tmp_path / "out", stop_after=2))
    assert summary == {"stopped": True}
    assert not (tmp_path / "out").exists()


def test_edited_rows_and_issues(tiny_lab, tmp_path):
    rows = [{"prompt": "Hi", "completion": " there"}, {"prompt": "Hi", "completion": ""}]
    ctx = Ctx(tmp_path)
    sft.run_job({"model": tiny_lab[0], "rows": rows, "steps": 1, "name": "mine"}, ctx)
    assert ctx.events[0]["data/rows"] == 1
    assert ctx.events[0]["data/issue_count"] == 1
    assert "line 2" in ctx.events[0]["data/issues"][0]


def test_wrong_dataset_kind(tiny_lab, tmp_path):
    with pytest.raises(DataError, match="needs preference rows"):
        dpo.run_job({"model": tiny_lab[0], "dataset": "tiny-chat"}, Ctx(tmp_path))
