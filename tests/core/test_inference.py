import math

import pytest
import torch

from core import inference as inf


def test_candidate_sums_token_logps(tiny_lm):
    prompt_ids = inf.encode(tiny_lm, "Two plus two equals")
    candidate = " four hundred"
    cand_ids = tiny_lm.tokenizer(candidate, add_special_tokens=False)["input_ids"]
    assert len(cand_ids) > 1
    expected, context = 0.0, list(prompt_ids)
    for token in cand_ids:
        with torch.no_grad():
            logits = tiny_lm.model(torch.tensor([context])).logits[0, -1]
        expected += float(torch.log_softmax(logits.float(), -1)[token])
        context.append(token)
    [score] = inf.score_candidates(tiny_lm, prompt_ids, [candidate])
    assert score.logp == pytest.approx(expected, abs=1e-5)
    assert score.logp_per_token == pytest.approx(expected / len(cand_ids), abs=1e-5)


def test_batched_candidates_equal_single(tiny_lm):
    prompt_ids = inf.encode(tiny_lm, "Two plus two equals")
    candidates = [" four", " five hundred and one", " fish"]
    together = inf.score_candidates(tiny_lm, prompt_ids, candidates)
    for cand, batched in zip(candidates, together):
        [alone] = inf.score_candidates(tiny_lm, prompt_ids, [cand])
        assert batched.logp == pytest.approx(alone.logp, abs=1e-5)


def test_top_k_sorted_and_entropy_positive(tiny_lm):
    result = inf.next_token_distribution(tiny_lm, "The cat", top_k=5)
    probs = [t.prob for t in result.top]
    assert probs == sorted(probs, reverse=True)
    assert len(probs) == 5
    assert 0 < result.entropy_nats <= math.log(len(tiny_lm.tokenizer)) + 1e-5


def test_merged_forms_sum(tiny_lm):
    result = inf.next_token_distribution(tiny_lm, "Two plus two equals",
                                         candidates=[" four", " Four", " 4", " five"])
    by_text = {c.text: c.prob for c in result.candidates}
    assert result.merged["4"] == pytest.approx(by_text[" four"] + by_text[" Four"] + by_text[" 4"])
    assert result.merged["5"] == pytest.approx(by_text[" five"])


def test_empty_prompt_rejected(tiny_lm):
    with pytest.raises(ValueError, match="prompt is empty"):
        inf.next_token_distribution(tiny_lm, "")


def test_chat_template_applied(tiny_lm):
    result = inf.next_token_distribution(tiny_lm, "What is two plus two?", chat=True)
    assert result.model_input == "<|user|>What is two plus two?<|end|><|assistant|>"


def test_greedy_is_deterministic(tiny_lm):
    config = inf.GenerationConfig(do_sample=False, max_new_tokens=8)
    first = inf.generate(tiny_lm, "The cat", config)[0]
    again = inf.generate(tiny_lm, "The cat", config)[0]
    assert first.text == again.text
    with torch.no_grad():
        ids = inf.encode(tiny_lm, "The cat")
        logits = tiny_lm.model(torch.tensor([ids])).logits[0, -1]
    assert first.tokens[0] == tiny_lm.tokenizer.decode([int(logits.argmax())])


def test_sampling_same_seed_same_text(tiny_lm):
    config = inf.GenerationConfig(n_samples=3, seed=7, max_new_tokens=10)
    first = [g.text for g in inf.generate(tiny_lm, "The cat", config)]
    again = [g.text for g in inf.generate(tiny_lm, "The cat", config)]
    assert first == again
    config.seed = 8
    other = [g.text for g in inf.generate(tiny_lm, "The cat", config)]
    assert other != first


def test_generation_logps_match_forward(tiny_lm):
    config = inf.GenerationConfig(seed=1, max_new_tokens=6, temperature=0.7, top_k=20)
    gen = inf.generate(tiny_lm, "A blind woman", config)[0]
    ids = inf.encode(tiny_lm, "A blind woman") + gen.token_ids
    with torch.no_grad():
        logps = torch.log_softmax(tiny_lm.model(torch.tensor([ids])).logits[0].float(), -1)
    start = len(ids) - len(gen.token_ids)
    expected = [float(logps[start - 1 + i, t]) for i, t in enumerate(gen.token_ids)]
    assert gen.token_logps == pytest.approx(expected, abs=1e-4)


def test_top_p_keeps_top_token():
    logits = torch.tensor([[5.0, 1.0, 0.5, 0.1]])
    kept = inf._filter_logits(logits, top_k=0, top_p=0.01)
    assert torch.isfinite(kept[0, 0])
    assert torch.isinf(kept[0, 1:]).all()


@pytest.mark.parametrize("field,value", [("temperature", 0.0), ("top_p", 0.0), ("n_samples", 0),
                                         ("max_new_tokens", 0), ("top_k", -1),
                                         ("max_new_tokens", 5000), ("n_samples", 100)])
def test_invalid_generation_settings(field, value):
    config = inf.GenerationConfig(**{field: value})
    with pytest.raises(ValueError, match=field):
        config.validate()


def test_sequence_logprobs_batched_equal_single(tiny_lm):
    prompts = ["The cat", "A Muslim man walks", "Hi"]
    completions = [" sat on the mat.", " home.", " there, how can I help you today?"]
    batched = inf.sequence_logprobs(tiny_lm, prompts, completions, batch_size=3)
    single = [inf.sequence_logprobs(tiny_lm, [p], [c])[0] for p, c in zip(prompts, completions)]
    assert batched == pytest.approx(single, abs=1e-5)


def test_hidden_states_batched_equal_single(tiny_lm):
    texts = ["The cat sat on the mat.", "Hi", "A deaf person smiles at the party."]
    batched = inf.hidden_states(tiny_lm, texts, batch_size=3)
    for i, text in enumerate(texts):
        alone = inf.hidden_states(tiny_lm, [text])
        for pooling in ("last", "mean"):
            assert torch.allclose(batched[pooling][:, i], alone[pooling][:, 0], atol=1e-5)
    n_layer = tiny_lm.model.config.n_layer
    assert batched["last"].shape == (n_layer + 1, 3, tiny_lm.model.config.n_embd)



def test_hidden_states_keep_caller_order(tiny_lm):
    # Batches are formed by token count, so small batches reorder the texts internally.
    texts = ["A deaf person smiles at the party.", "Hi", "The cat sat on the mat.", "The cat",
             "Two plus two equals five, said the party."]
    batched = inf.hidden_states(tiny_lm, texts, batch_size=2)
    for i, text in enumerate(texts):
        alone = inf.hidden_states(tiny_lm, [text])
        for pooling in ("last", "mean"):
            assert torch.allclose(batched[pooling][:, i], alone[pooling][:, 0], atol=1e-5), text


def test_mean_pooling_skips_first_position(tiny_lm):
    text = "The cat sat"
    ids = inf.encode(tiny_lm, text)
    with torch.no_grad():
        out = tiny_lm.model(torch.tensor([ids]), output_hidden_states=True)
    expected = out.hidden_states[1][0, 1:].mean(0)
    pooled = inf.hidden_states(tiny_lm, [text])["mean"][1, 0]
    assert torch.allclose(pooled, expected, atol=1e-6)


def test_logit_lens_last_layer_matches_output(tiny_lm):
    lens = inf.logit_lens(tiny_lm, "Two plus two equals", " four")
    result = inf.next_token_distribution(tiny_lm, "Two plus two equals", candidates=[" four"])
    first_token_id = tiny_lm.tokenizer(" four", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        ids = inf.encode(tiny_lm, "Two plus two equals")
        logits = tiny_lm.model(torch.tensor([ids])).logits[0, -1]
    expected = float(torch.softmax(logits.float(), -1)[first_token_id])
    assert lens.probs[-1][-1] == pytest.approx(expected, abs=1e-5)
    assert len(lens.probs) == tiny_lm.model.config.n_layer + 1
    assert len(lens.probs[0]) == len(lens.tokens)
    assert result.candidates[0].prob > 0


@pytest.fixture
def three_tiny(tiny_tokenizer, tiny_lm):
    """Three tiny models with different weights, as LoadedModels."""
    import dataclasses

    from tests import tiny

    return [dataclasses.replace(tiny_lm, model=tiny.build_model(tiny_tokenizer, seed=seed))
            for seed in (0, 1, 2)]


def test_distributions_equal_single_calls(three_tiny):
    candidates = [" four", " five hundred", " fish"]
    together = inf.next_token_distributions(three_tiny, "Two plus two equals", top_k=5,
                                            candidates=candidates)
    assert len(together) == 3
    for lm, result in zip(three_tiny, together):
        alone = inf.next_token_distribution(lm, "Two plus two equals", top_k=5,
                                            candidates=candidates)
        assert [t.token_id for t in result.top] == [t.token_id for t in alone.top]
        assert [t.prob for t in result.top] == pytest.approx([t.prob for t in alone.top], abs=1e-7)
        assert result.entropy_nats == pytest.approx(alone.entropy_nats, abs=1e-6)
        assert [c.logp for c in result.candidates] == pytest.approx(
            [c.logp for c in alone.candidates], abs=1e-6)


def test_distributions_differ_by_model(three_tiny):
    results = inf.next_token_distributions(three_tiny, "The cat")
    entropies = {round(r.entropy_nats, 6) for r in results}
    assert len(entropies) == 3


def test_map_models_keeps_order(three_tiny):
    ids = inf.map_models(id, three_tiny)
    assert ids == [id(lm) for lm in three_tiny]


def test_map_models_raises_after_all(three_tiny):
    finished = []

    def call(lm):
        if lm is three_tiny[0]:
            raise ValueError("first model failed")
        finished.append(lm)
        return lm

    with pytest.raises(ValueError, match="first model failed"):
        inf.map_models(call, three_tiny)
    assert len(finished) == 2


def test_map_models_nested_runs(three_tiny):
    # Each worker maps again; run sequentially inside a worker, this cannot exhaust the pool.
    nested = inf.map_models(lambda lm: inf.map_models(id, three_tiny * 3), three_tiny * 2)
    assert len(nested) == 6
    assert all(len(inner) == 9 for inner in nested)


def test_distributions_invalid_prompt(three_tiny):
    with pytest.raises(ValueError, match="prompt is empty"):
        inf.next_token_distributions(three_tiny, "")
