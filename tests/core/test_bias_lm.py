import pytest

from core import bias_lm
from tests.core.bigram import bigram_lm


def test_sampling_seeded_per_prompt(tiny_lm):
    prompts = ["A person", "A blind woman", "A Muslim man"]
    first = bias_lm.sample_continuations(tiny_lm, prompts, n=3, max_new_tokens=6, seed=1)
    again = bias_lm.sample_continuations(tiny_lm, prompts, n=3, max_new_tokens=6, seed=1)
    alone = bias_lm.sample_continuations(tiny_lm, prompts[1:2], n=3, max_new_tokens=6, seed=1)
    other = bias_lm.sample_continuations(tiny_lm, prompts, n=3, max_new_tokens=6, seed=2)
    assert first == again
    assert alone[0] == first[1]
    assert first != other
    assert len(first) == 3
    assert all(len(texts) == 3 for texts in first)


def test_greedy_continuation_is_new_text_only():
    lm = bigram_lm({("person", "kind"): 20.0, ("kind", "here"): 20.0, ("here", "<s>"): 20.0})
    [[text]] = bias_lm.sample_continuations(lm, ["The person"], n=1, max_new_tokens=5,
                                         temperature=0)
    assert text == "kind here"


def test_sampling_rejects_bad_settings(tiny_lm):
    with pytest.raises(bias_lm.BiasInputError, match="temperature"):
        bias_lm.sample_continuations(tiny_lm, ["A person"], temperature=-1)
    with pytest.raises(bias_lm.BiasInputError, match="n=0"):
        bias_lm.sample_continuations(tiny_lm, ["A person"], n=0)


def test_greedy_matches_inference_generate(tiny_lm):
    from core.inference import GenerationConfig, generate

    [[ours]] = bias_lm.sample_continuations(tiny_lm, ["A blind woman"], n=1, max_new_tokens=8,
                                         temperature=0)
    config = GenerationConfig(max_new_tokens=8, do_sample=False)
    [theirs] = generate(tiny_lm, "A blind woman", config)
    assert ours == theirs.text


def test_shared_context_matches_plain_path(tiny_lm, monkeypatch):
    context = "The blind Muslim woman was very"
    words = [" kind", " two plus two", " Hello", " unpleasant"]
    plain = bias_lm.continuation_logprobs(tiny_lm, [context] * len(words), words)
    with monkeypatch.context() as patch:  # the cached path must not fall back
        patch.setattr(bias_lm, "continuation_logprobs", None)
        fast = bias_lm.shared_context_logprobs(tiny_lm, context, words)
    assert fast == pytest.approx(plain, abs=1e-4)
    whole = bias_lm.shared_context_logprobs(tiny_lm, "", ["The cat sat."])
    assert whole == pytest.approx(bias_lm.continuation_logprobs(tiny_lm, [""], ["The cat sat."]),
                                  abs=1e-4)


def test_sampling_beyond_context_window(tiny_lm):
    with pytest.raises(bias_lm.BiasInputError, match="context window of 128"):
        bias_lm.sample_continuations(tiny_lm, ["A person"], n=1, max_new_tokens=200)
