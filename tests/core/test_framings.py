import pytest

from core import framings as fr
from core import inference


def test_parse_chat_and_prefix():
    [plain, chat] = fr.parse_framings("Two plus two equals\n\nchat: What is 2+2? => 2+2 equals")
    assert plain == fr.Framing("Two plus two equals", "Two plus two equals", False, "")
    assert chat.chat and chat.prompt == "What is 2+2?" and chat.response_prefix == "2+2 equals"


def test_parse_rejects_empty():
    with pytest.raises(ValueError, match="No framings"):
        fr.parse_framings("  \n ")


def test_answer_probabilities_sum_forms(tiny_lm):
    framing = fr.parse_framings("Two plus two equals")[0]
    probs = fr.answer_probabilities(tiny_lm, framing)
    result = inference.next_token_distribution(tiny_lm, "Two plus two equals",
                                               candidates=fr.ANSWER_FORMS["four"])
    assert probs["four"] == pytest.approx(sum(c.prob for c in result.candidates), rel=1e-6)


def test_chat_prefix_ends_model_input(tiny_lm):
    result = inference.next_token_distribution(tiny_lm, "What is 2+2?", chat=True,
                                               response_prefix="2+2 equals")
    assert result.model_input.endswith("<|assistant|>2+2 equals")


def test_framing_grid_shape(tiny_lm):
    grid = fr.framing_grid({"a": tiny_lm, "b": tiny_lm}, fr.parse_framings(fr.DEFAULT_FRAMINGS))
    n_framings = len(fr.DEFAULT_FRAMINGS.splitlines())
    assert len(grid) == n_framings * 2 * len(fr.ANSWER_FORMS)
    assert grid["probability"].between(0, 1).all()


def test_framing_grid_matches_single_model(tiny_lm, tiny_tokenizer):
    import dataclasses

    from tests import tiny

    other = dataclasses.replace(tiny_lm, model=tiny.build_model(tiny_tokenizer, seed=5))
    framings = fr.parse_framings(fr.DEFAULT_FRAMINGS)
    grid = fr.framing_grid({"a": tiny_lm, "b": other}, framings)
    for name, lm in (("a", tiny_lm), ("b", other)):
        for framing in framings:
            expected = fr.answer_probabilities(lm, framing)
            rows = grid[(grid["model"] == name) & (grid["framing"] == framing.text)]
            assert dict(zip(rows["answer"], rows["probability"])) == expected
