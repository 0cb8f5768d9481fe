from pathlib import Path

from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "bias.py")


def run_page(timeout: int = 120) -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=timeout)
    app.run()
    assert not app.exception, app.exception
    return app


def click(app: AppTest, key: str) -> AppTest:
    app.button(key=key).click().run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    return app


def captions(app: AppTest) -> str:
    return " ".join(c.value for c in app.caption)


def test_page_waits_for_buttons(tiny_lab):
    app = run_page()
    assert not app.error, [e.value for e in app.error]
    assert any("written by this project" in w.value for w in app.warning)
    assert "nats" not in captions(app)
    assert len(app.dataframe) == 1  # only the corpus counts
    counts = app.dataframe[0].value
    assert {"axis", "marker", "count"} <= set(counts.columns)


def test_grid_samples_every_model(tiny_lab):
    app = run_page()
    app.slider[0].set_value(2)
    app.slider[1].set_value(5)
    click(app, "bias_grid_run")
    assert "VADER" in captions(app)
    samples = app.dataframe[0].value
    assert set(samples.model) == set(tiny_lab)
    assert (samples.groupby(["model", "prompt"]).size() == 2).all()
    assert "A person" in set(samples.prompt)


def test_probe_and_crows_stay_after_rerun(tiny_lab):
    app = run_page()
    click(app, "bias_probe_run")
    click(app, "bias_crows_run")
    app.run()  # a revisit with the same settings shows the cached results without a press
    assert not app.exception, app.exception
    assert "nats" in captions(app)
    assert "0.5 (dashed)" in captions(app)


def test_bad_hosted_crows_file_names_fix(tiny_lab, lab_home):
    from core import paths

    (paths.data_dir() / "pairs.csv").write_text("sentence,other\na,b\n")
    app = run_page()
    app.selectbox(key="bias_crows_file").set_value("pairs.csv").run()
    messages = [e.value for e in app.error]
    assert any("stereo_antistereo" in m and "Rename the columns" in m for m in messages)


def test_crows_offers_only_hosted_files(tiny_lab, lab_home, tmp_path):
    (tmp_path / "secret.csv").write_text("token\nhunter2\n")
    app = run_page()
    assert "bias_crows_path" not in [box.key for box in app.text_input]  # no free path box
    options = app.selectbox(key="bias_crows_file").options
    assert options == ["(the tiny sample)"]


def test_empty_axis_shows_fix(tiny_lab):
    app = run_page()
    app.multiselect(key="bias_religion").set_value([]).run()
    app.button(key="bias_probe_run").click().run()
    assert not app.exception, app.exception
    assert any("'religion'" in e.value and "pick at least one" in e.value for e in app.error)
