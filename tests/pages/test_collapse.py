import pandas as pd

from core import collapse, models
from core.prompt_sets import load_prompts


def _table(at) -> pd.DataFrame:
    return at.dataframe[0].value


def test_collapse_shows_models_and_null(app_page, tiny_lab):
    at = app_page("collapse").run()
    assert not at.exception
    table = _table(at)
    for name in tiny_lab:
        assert name in table.columns
    assert "Gaussian null (D=32)" in table.columns
    assert "more collapsed when" in table.columns
    assert "effective rank" in table.index


def test_collapse_caption_names_n(app_page, tiny_lab):
    at = app_page("collapse").run()
    captions = " ".join(c.value for c in at.caption)
    assert "N = 256" in captions
    assert "depend on N" in captions


def test_collapse_numbers_match_core(app_page, tiny_lab):
    at = app_page("collapse").run()
    shown = _table(at).loc["effective rank", tiny_lab[0]]
    lm = models.load_model(tiny_lab[0])
    expected = collapse.model_geometry(lm, list(load_prompts(256)["text"]),
                                       collapse.CollapseSettings())
    value = expected.table.set_index("metric").loc["erank", "value"]
    assert shown.startswith(f"{value:.3g} [")


def test_collapse_changing_n_changes_caption(app_page, tiny_lab):
    at = app_page("collapse").run()
    at.slider[0].set_value(128)
    at = at.run()
    assert not at.exception
    assert "N = 128" in " ".join(c.value for c in at.caption)


def test_collapse_diversity_button(app_page, tiny_lab):
    at = app_page("collapse").run()
    at.number_input[0].set_value(2)
    at.number_input[1].set_value(2)
    at.number_input[2].set_value(4)
    at = at.button[-1].click().run()
    assert not at.exception
    div = at.dataframe[1].value
    assert set(tiny_lab) <= set(div.columns)
    assert any("exactly 4 tokens" in c.value for c in at.caption)


def test_diversity_waits_for_button_after_change(app_page, tiny_lab):
    at = app_page("collapse").run()
    at.number_input[0].set_value(2)
    at.number_input[1].set_value(2)
    at.number_input[2].set_value(4)
    sample_button = next(b for b in at.button if b.label == "Sample and measure diversity")
    at = sample_button.click().run()
    assert any("exactly 4 tokens" in c.value for c in at.caption)
    at.number_input[2].set_value(5)
    at = at.run()
    assert not at.exception
    assert any("press the button to sample again" in i.value for i in at.info)
    assert not any("exactly 5 tokens" in c.value for c in at.caption)
    sample_button = next(b for b in at.button if b.label == "Sample and measure diversity")
    at = sample_button.click().run()
    assert any("exactly 5 tokens" in c.value for c in at.caption)


def test_collapse_pooling_changes_numbers(app_page, tiny_lab):
    at = app_page("collapse").run()
    before = _table(at).loc["effective rank", tiny_lab[0]]
    at.radio[0].set_value("mean")
    at = at.run()
    assert not at.exception
    assert _table(at).loc["effective rank", tiny_lab[0]] != before


def test_collapse_colour_by_category(app_page, tiny_lab):
    at = app_page("collapse").run()
    at.radio[1].set_value("category")
    at = at.run()
    assert not at.exception
