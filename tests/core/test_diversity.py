"""Diversity metrics on hand-computed cases, and sampling on a tiny GPT-2."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core import diversity
from core.models import LoadedModel, ModelSpec
from tests import tiny

PROMPTS = ["The cat sat", "Two plus two equals", "Hello"]
FAST = diversity.DiversitySettings(n_samples=3, length=6, n_boot=20)


def _tiny(tokenizer, seed: int, name: str) -> LoadedModel:
    spec = ModelSpec(name=name, label=name, family="tiny", stage="base", kind="local",
                     source="built in the test")
    return LoadedModel(model=tiny.build_model(tokenizer, seed=seed), tokenizer=tokenizer,
                       spec=spec, device=torch.device("cpu"), dtype=torch.float32)


# distinct-n and EAD

def test_distinct_counts_unique_ngrams():
    samples = [["a", "b", "a"], ["a", "c"]]
    assert diversity.distinct_n(samples, 1) == pytest.approx(3 / 5)  # a b c of 5
    assert diversity.distinct_n(samples, 2) == pytest.approx(3 / 3)  # ab ba ac


def test_distinct_all_same_is_low():
    samples = [["x"] * 4, ["x"] * 4]
    assert diversity.distinct_n(samples, 1) == pytest.approx(1 / 8)


def test_ead_matches_formula():
    samples = [["a", "b", "a"], ["a", "c"]]
    vocab, count = 10, 5
    expected = 3 / (vocab * (1 - ((vocab - 1) / vocab) ** count))
    assert diversity.ead_n(samples, 1, vocab) == pytest.approx(expected)


def test_ead_corrects_for_length():
    # Uniform draws: distinct-1 falls as the text grows, EAD stays near 1.
    rng = np.random.default_rng(0)
    vocab = 1000
    short = [list(rng.integers(0, vocab, 50))]
    long = [list(rng.integers(0, vocab, 2000))]
    assert diversity.distinct_n(long, 1) < diversity.distinct_n(short, 1) - 0.2
    assert diversity.ead_n(short, 1, vocab) == pytest.approx(1.0, abs=0.1)
    assert diversity.ead_n(long, 1, vocab) == pytest.approx(1.0, abs=0.1)


# BLEU and self-BLEU

def test_bleu_identical_is_one():
    text = "the cat sat on the mat".split()
    assert diversity.sentence_bleu(text, [text]) == pytest.approx(1.0)


def test_bleu_hand_computed():
    hyp = "the cat sat on the mat".split()
    ref = "the cat is on the mat".split()
    # clipped precisions: 5/6, 3/5, 1/4, 0 -> 0.1/3 after smoothing; equal lengths, BP = 1
    expected = math.exp((math.log(5 / 6) + math.log(3 / 5) + math.log(1 / 4)
                         + math.log(0.1 / 3)) / 4)
    assert diversity.sentence_bleu(hyp, [ref]) == pytest.approx(expected)


def test_bleu_brevity_penalty():
    hyp = "the cat".split()
    ref = "the cat sat on the mat".split()
    score = diversity.sentence_bleu(hyp, [ref])
    precision = math.exp((0 + 0 + math.log(0.1 / 1) + math.log(0.1 / 1)) / 4)
    assert score == pytest.approx(math.exp(1 - 6 / 2) * precision)


def test_bleu_clips_repeated_words():
    hyp = ["the"] * 4
    ref = "the cat".split()
    score = diversity.sentence_bleu(hyp, [ref], max_n=1)
    assert score == pytest.approx(1 / 4)


def test_self_bleu_copies_vs_distinct():
    same = [["a", "b", "c", "d"]] * 3
    different = [["a", "b", "c", "d"], ["e", "f", "g", "h"], ["i", "j", "k", "l"]]
    assert diversity.self_bleu(same) == pytest.approx(1.0)
    assert diversity.self_bleu(different) < 0.1


# Variety and embeddings

def test_variety_counts_normalised_answers():
    assert diversity.variety(["Four.", "four", " FOUR!"]) == pytest.approx(1.0)
    assert diversity.variety(["four", "five", "six", "seven"]) == pytest.approx(4.0)
    p = np.array([2, 1]) / 3
    assert diversity.variety(["4", "four", "five"]) == pytest.approx(np.exp(-(p * np.log(p)).sum()))


def test_embedding_diversity_range():
    same = np.tile([1.0, 2.0, 3.0], (4, 1))
    assert diversity.embedding_diversity(same) == pytest.approx(0.0)
    assert diversity.embedding_diversity(np.eye(3)) == pytest.approx(1.0)


# Sampling on a tiny model

def test_samples_have_equal_length(tiny_tokenizer):
    lm = _tiny(tiny_tokenizer, 0, "base")
    samples = diversity.sample_fixed_length(lm, [5, 6, 7], n=4, length=9, temperature=1.0,
                                            seed=0)
    assert samples.shape == (4, 9)
    assert not (samples == tiny_tokenizer.eos_token_id).any()


def test_same_seed_same_samples(tiny_tokenizer):
    lm = _tiny(tiny_tokenizer, 0, "base")
    first = diversity.sample_fixed_length(lm, [5, 6], 3, 5, 0.7, seed=4)
    again = diversity.sample_fixed_length(lm, [5, 6], 3, 5, 0.7, seed=4)
    other = diversity.sample_fixed_length(lm, [5, 6], 3, 5, 0.7, seed=5)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_measure_table_layout(tiny_tokenizer):
    base, tuned = _tiny(tiny_tokenizer, 0, "base"), _tiny(tiny_tokenizer, 1, "tuned")
    table, samples = diversity.measure_diversity(tuned, PROMPTS, base, FAST)
    assert set(table["temperature"]) == {1.0, 0.7}
    assert set(table["scope"]) == {"within prompt", "across prompts", "per token"}
    assert len(samples) == 2 * len(PROMPTS) * FAST.n_samples
    kl = table[table["metric"] == "kl_to_reference"]["value"]
    assert (kl > 0).all()


def test_kl_to_itself_is_zero(tiny_tokenizer):
    base = _tiny(tiny_tokenizer, 0, "base")
    table, _ = diversity.measure_diversity(base, PROMPTS, base, FAST)
    kl = table[table["metric"] == "kl_to_reference"]["value"]
    assert kl.abs().max() < 1e-6


def test_branching_factor_is_exp_entropy(tiny_tokenizer):
    base = _tiny(tiny_tokenizer, 0, "base")
    table, _ = diversity.measure_diversity(base, PROMPTS, None, FAST)
    rows = table[table["temperature"] == 1.0].set_index("metric")["value"]
    assert rows["branching_factor"] == pytest.approx(math.exp(rows["entropy"]))
    assert math.isnan(rows["kl_to_reference"])


def test_cached_diversity_reads_back(lab_home, tiny_tokenizer, monkeypatch):
    base = _tiny(tiny_tokenizer, 0, "base")
    first, _ = diversity.cached_diversity(base, PROMPTS, base, FAST)

    def fail(*args, **kwargs):
        raise AssertionError("sampled again")

    monkeypatch.setattr(diversity, "measure_diversity", fail)
    again, _ = diversity.cached_diversity(base, PROMPTS, base, FAST)
    assert np.allclose(again["value"], first["value"], equal_nan=True)


@pytest.mark.parametrize("field, value", [("n_samples", 1), ("length", 1),
                                          ("temperatures", (0.0,))])
def test_invalid_settings_raise(field, value):
    settings = diversity.DiversitySettings(**{field: value})
    with pytest.raises(ValueError, match=field):
        settings.validate()
