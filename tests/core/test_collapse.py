"""Collapse measurements on a tiny GPT-2: pooling, caching, the null and the joint PCA."""

from __future__ import annotations

import numpy as np
import pytest

from core import collapse, geometry, inference
from core.prompt_sets import load_prompts

PROMPTS = ["The cat sat", "Two plus two equals four", "Hello", "What is two plus two?",
           "A blind woman reads a book", "Thank you very much", "The answer is", "It is four"]
FAST = collapse.CollapseSettings(n_boot=5)


def test_geometry_shapes_and_layers(lab_home, tiny_lm):
    result = collapse.model_geometry(tiny_lm, PROMPTS, FAST)
    assert result.n_layer == 2
    assert result.layer == 2
    assert result.n_prompts == len(PROMPTS)
    assert result.points().shape == (len(PROMPTS), 32)
    assert sorted(result.layer_curve["layer"].unique()) == [0, 1, 2]
    assert list(result.table["metric"]) == list(geometry.METRICS)


def test_pooled_states_match_inference(lab_home, tiny_lm):
    files = collapse.pooled_states(tiny_lm, PROMPTS, FAST)
    direct = inference.hidden_states(tiny_lm, PROMPTS, batch_size=3)
    for pooling, path in files.items():
        np.testing.assert_allclose(np.load(path), direct[pooling].numpy(), atol=1e-5)


def test_depth_picks_middle_layer(lab_home, tiny_lm):
    settings = collapse.CollapseSettings(n_boot=5, depth=0.5)
    result = collapse.model_geometry(tiny_lm, PROMPTS, settings)
    assert result.layer == 1
    expected = geometry.compute_metrics(result.points(1))
    table = result.table.set_index("metric")["value"]
    for name, value in expected.items():
        assert table[name] == pytest.approx(value), name


def test_second_call_reads_cache(lab_home, tiny_lm, monkeypatch):
    first = collapse.model_geometry(tiny_lm, PROMPTS, FAST)

    def fail(*args, **kwargs):
        raise AssertionError("the forward pass ran again")

    monkeypatch.setattr(collapse, "_forward_pooled", fail)
    second = collapse.model_geometry(tiny_lm, PROMPTS, FAST)
    assert second.table.equals(first.table)
    assert (lab_home / "cache" / "collapse").is_dir()


def test_same_seed_same_result_without_cache(lab_home, tiny_lm, tmp_path, monkeypatch):
    first = collapse.model_geometry(tiny_lm, PROMPTS, FAST)
    monkeypatch.setenv("ALIGNMENT_LAB_HOME", str(tmp_path / "other-home"))
    second = collapse.model_geometry(tiny_lm, PROMPTS, FAST)
    np.testing.assert_allclose(second.table[["value", "low", "high"]].to_numpy(),
                               first.table[["value", "low", "high"]].to_numpy(), atol=1e-9)


def test_changed_weights_change_fingerprint(tiny_lm):
    before = collapse.model_fingerprint(tiny_lm)
    model = tiny_lm.fresh_copy()
    with np.errstate(all="ignore"):
        next(model.parameters()).data.add_(0.5)
    tiny_lm.model = model
    assert collapse.model_fingerprint(tiny_lm) != before


def test_null_has_model_shape(lab_home):
    null = collapse.null_geometry(16, 32, FAST)
    assert null.n_prompts == 16
    assert null.dim == 32
    assert len(null.spectrum) == 16
    assert null.spectrum[-1] == pytest.approx(0.0, abs=1e-6)  # centering removes one direction


def test_joint_pca_rows_per_model(lab_home, tiny_lm):
    results = [collapse.model_geometry(tiny_lm, PROMPTS, FAST)]
    results.append(collapse.model_geometry(tiny_lm, PROMPTS, FAST))
    results[1].model = "copy"
    labels = load_prompts(len(PROMPTS))[["kind", "category"]]
    table, skipped = collapse.joint_pca(results, labels)
    assert skipped == []
    assert len(table) == 2 * len(PROMPTS)
    assert set(table.columns) >= {"model", "pc1", "pc2", "kind", "category"}


@pytest.mark.parametrize("field, value", [("pooling", "max"), ("depth", 1.5), ("n_boot", 1)])
def test_invalid_settings_raise(field, value):
    settings = collapse.CollapseSettings(**{field: value})
    with pytest.raises(ValueError, match=field):
        settings.validate()


def test_empty_prompt_raises(lab_home, tiny_lm):
    with pytest.raises(ValueError, match="empty"):
        collapse.model_geometry(tiny_lm, ["fine", "  "], FAST)


def test_shipped_prompt_set_is_balanced():
    prompts = load_prompts()
    assert len(prompts) >= 1024
    assert prompts["text"].is_unique
    counts = prompts["kind"].value_counts()
    assert counts["text"] == counts["chat"]
    assert load_prompts(256)["kind"].value_counts().to_dict() == {"text": 128, "chat": 128}
    assert prompts.groupby("kind")["category"].nunique().min() >= 8
