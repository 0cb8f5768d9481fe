import html
import re

from core import inference, models


def _submit(at):
    at.get("form_submit_button")[0].click()
    return at.run()


def test_compare_generates_for_each_model(app_page, tiny_lab):
    at = _submit(app_page("compare").run())
    assert not at.exception
    assert [m.value for m in at.markdown if m.value.startswith("#### ")] == [
        f"#### {name}" for name in tiny_lab]
    sample_captions = [c.value for c in at.caption if c.value.startswith("Sample")]
    assert len(sample_captions) == 2 * len(tiny_lab)


def test_compare_text_matches_core(app_page, tiny_lab):
    at = app_page("compare").run()
    at.toggle[0].set_value(True)  # greedy
    at = _submit(at)
    lm = models.load_model(tiny_lab[0])
    config = inference.GenerationConfig(do_sample=False, max_new_tokens=40, top_k=50,
                                        top_p=0.95)
    expected = inference.generate(lm, "Two plus two equals", config)[0]
    blocks = [m.value for m in at.markdown if m.value.startswith("<div")]
    shown = html.unescape(re.sub(r"<[^>]+>", "", blocks[0])).replace("↵", "")
    assert shown == "".join(expected.tokens).replace("\n", "")


def test_compare_unknown_model_reports_error(app_page, tiny_lab, monkeypatch):
    monkeypatch.setenv("ALIGNMENT_LAB_MODELS", f"{tiny_lab[0]},no-such-model")
    at = _submit(app_page("compare").run())
    assert not at.exception
    assert any("Unknown model 'no-such-model'" in e.value for e in at.error)
    assert f"#### {tiny_lab[0]}" in [m.value for m in at.markdown]


def test_default_models_keep_url_clean(app_page, tiny_lab):
    at = app_page("compare").run()
    assert "models" not in at.query_params


def test_changed_models_go_to_url(app_page, tiny_lab):
    at = app_page("compare").run()
    at.multiselect[0].set_value(tiny_lab[:2]).run()
    assert not at.exception
    assert at.query_params["models"] == ",".join(tiny_lab[:2])


def test_url_models_are_selected(app_page, tiny_lab):
    at = app_page("compare")
    at.query_params["models"] = tiny_lab[2]
    at = at.run()
    assert at.multiselect[0].value == [tiny_lab[2]]
    assert at.query_params["models"] == tiny_lab[2]
