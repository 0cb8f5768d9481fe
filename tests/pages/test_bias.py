from pathlib import Path

from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "bias.py")


def run_page(timeout: int = 120) -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=timeout)
    app.run()
    assert not app.exception, app.exception
    return app


def test_page_shows_probe_and_sample_crows(tiny_lab):
    app = run_page()
    assert not app.error, [e.value for e in app.error]
    captions = " ".join(c.value for c in app.caption)
    assert "nats" in captions
    assert "0.5 (dashed)" in captions
    assert any("written by this project" in w.value for w in app.warning)
    assert len(app.dataframe) == 1  # the corpus counts; the grid waits for its button


def test_grid_runs_on_button(tiny_lab):
    app = run_page()
    app.slider[0].set_value(2)
    app.slider[1].set_value(5)
    app.button[0].click().run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    assert any("VADER" in c.value for c in app.caption)
    samples = app.dataframe[0].value
    assert set(samples.model) == set(tiny_lab)
    assert (samples.groupby(["model", "prompt"]).size() == 2).all()


def test_bad_crows_path_names_fix(tiny_lab, tmp_path):
    bad = tmp_path / "pairs.csv"
    bad.write_text("sentence,other\na,b\n")
    app = run_page()
    app.text_input[1].set_value(str(bad)).run()
    messages = [e.value for e in app.error]
    assert any("stereo_antistereo" in m and "rename the columns" in m for m in messages)
