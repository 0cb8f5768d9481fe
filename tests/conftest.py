"""Shared fixtures: an isolated lab home and tiny models that need no download."""

from __future__ import annotations

import pytest

import core  # noqa: F401  (sets the OpenMP wait policy before torch loads)
from tests import tiny


@pytest.fixture
def lab_home(tmp_path, monkeypatch):
    """Point the lab at an empty temporary home with the built-in SmolLM2 hidden."""
    home = tmp_path / "lab-home"
    monkeypatch.setenv("ALIGNMENT_LAB_HOME", str(home))
    monkeypatch.setenv("ALIGNMENT_LAB_BUILTINS", "0")
    monkeypatch.setenv("ALIGNMENT_LAB_DEVICE", "cpu")
    monkeypatch.setenv("ALIGNMENT_LAB_STANDBY", "0")
    monkeypatch.delenv("ALIGNMENT_LAB_MODELS", raising=False)
    return home


@pytest.fixture
def tiny_lab(lab_home, monkeypatch):
    """A lab home whose run store holds a tiny base, SFT and DPO model, selected by default.

    Returns the three model names in that order.
    """
    names = tiny.save_tiny_family(lab_home / "runs")
    monkeypatch.setenv("ALIGNMENT_LAB_MODELS", ",".join(names))
    return names


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return tiny.build_tokenizer()


@pytest.fixture
def tiny_lm(tiny_tokenizer):
    """A LoadedModel around a random tiny GPT-2, built without the registry."""
    import torch

    from core.models import LoadedModel, ModelSpec

    spec = ModelSpec(name="tiny", label="tiny", family="tiny", stage="base", kind="local",
                     source="built in the test")
    return LoadedModel(model=tiny.build_model(tiny_tokenizer), tokenizer=tiny_tokenizer,
                       spec=spec, device=torch.device("cpu"), dtype=torch.float32)
