import pytest

from core import inference, models


def test_probabilities_page_runs(app_page, tiny_lab):
    at = app_page("probabilities").run()
    assert not at.exception
    assert not at.error
    subheaders = [s.value for s in at.subheader]
    assert "Candidate answers" in subheaders
    assert any(s.startswith("Logit lens") for s in subheaders)


def test_candidate_table_matches_core(app_page, tiny_lab):
    at = app_page("probabilities").run()
    table = next(df.value for df in at.dataframe if "candidate" in df.value.columns)
    lm = models.load_model(tiny_lab[1])
    result = inference.next_token_distribution(lm, "Two plus two equals", candidates=[" five"])
    row = table.set_index("candidate").loc[" five"]
    assert row[f"P ({tiny_lab[1]})"] == pytest.approx(result.candidates[0].prob, rel=1e-5)
    first = models.load_model(tiny_lab[0])
    base = inference.next_token_distribution(first, "Two plus two equals", candidates=[" five"])
    ratio = row[f"log-ratio ({tiny_lab[1]} vs {tiny_lab[0]})"]
    assert ratio == pytest.approx(result.candidates[0].logp - base.candidates[0].logp, abs=1e-5)


def test_bad_framing_line_shows_error(app_page, tiny_lab):
    at = app_page("probabilities").run()
    at.text_area(key="probs_framings").set_value("chat: => only a prefix").run()
    assert not at.exception
    assert any("has no prompt" in e.value for e in at.error)


def test_custom_prompt(app_page, tiny_lab):
    at = app_page("probabilities").run()
    at.selectbox(key="probs_preset").set_value("(write your own)").run()
    assert any("Type a prompt" in i.value for i in at.info)
    at.text_input(key="probs_custom").set_value("The cat sat on the").run()
    assert not at.exception
    assert not at.error
