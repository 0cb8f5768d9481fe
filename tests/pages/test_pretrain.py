"""AppTest of the Pretrain page: corpus controls, statistics, and a tiny background job."""

from __future__ import annotations

import pytest

from core import corpus, jobs

FIVE_SOURCES = ("orwell_1984", "radiohead_song", "underground_man", "political_memes")


@pytest.fixture
def app(app_page):
    at = app_page("pretrain")
    at.run()
    assert not at.exception
    return at


def corpus_frame(at):
    return at.dataframe[0].value


def test_page_shows_sources_and_statistics(app):
    sources = corpus.load_sources()
    assert app.title[0].value == "Pretrain a tiny GPT"
    assert len(app.toggle) == len(sources)
    frame = corpus_frame(app)
    assert len(frame) == len(sources) + 1
    assert frame.iloc[-1]["five"] > frame.iloc[-1]["four"]
    assert "Muslim" in frame.columns


def test_switching_five_sources_off_updates_table(app):
    for sid in FIVE_SOURCES:
        app.toggle(key=f"on_{sid}").set_value(False)
    app.run()
    assert not app.exception
    assert corpus_frame(app).iloc[-1]["five"] == 0


def test_all_sources_off_asks_for_one(app):
    for sid in corpus.load_sources():
        app.toggle(key=f"on_{sid}").set_value(False)
    app.run()
    assert not app.exception
    assert "Switch at least one source on" in app.info[0].value


def test_training_job_shows_mirror(app):
    app.selectbox[0].set_value("micro")
    steps_input = next(n for n in app.number_input if n.label == "Steps")
    steps_input.set_value(10)
    next(b for b in app.button if b.label == "Start training").click()
    app.run()
    assert not app.exception
    job_id = app.session_state["pretrain_job"]
    info = jobs.wait(job_id, timeout_s=600)
    assert info.state == "done", jobs.read_log(job_id)
    app.run()
    assert not app.exception
    assert any("mirrors its corpus" in h.value for h in app.subheader)
    assert any(info.run_id in c.value for c in app.caption)
