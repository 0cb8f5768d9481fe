"""AppTest of the Class preferences page against tiny models in a temporary lab home."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core import workshop

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "preferences.py")
PAIRS = [{"prompt": "Two plus two equals", "a": " four", "b": " five", "model": "tiny"},
         {"prompt": "Is my poem good?", "a": " Yes!", "b": " It rhymes well.", "model": "tiny"}]


def _app(voter: str = "student-1") -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.query_params["owner"] = voter
    return app


def _button(app: AppTest, label: str):
    return next(button for button in app.button if button.label == label)


def test_no_pairs_shows_hint(tiny_lab):
    app = _app().run()
    assert not app.exception
    assert app.text_input(key="pref_session").value == "seminar-1"
    assert "no answer pairs yet" in app.info[0].value


def test_vote_recorded_for_shown_side(tiny_lab):
    workshop.add_pairs("seminar-1", PAIRS)
    app = _app().run()
    assert "Pair 1 of 2" in [caption.value for caption in app.caption]
    left_side = "b" if workshop.shows_b_first(workshop.read_pairs("seminar-1")[0]["id"],
                                              "student-1") else "a"
    _button(app, "Left is better").click().run()
    assert not app.exception
    votes = workshop.read_votes("seminar-1")
    assert len(votes) == 1
    assert votes[0]["choice"] == left_side
    assert votes[0]["voter"] == "student-1"
    assert "Pair 2 of 2" in [caption.value for caption in app.caption]


def test_skip_then_done_message(tiny_lab):
    workshop.add_pairs("seminar-1", PAIRS[:1])
    app = _app().run()
    _button(app, "Skip: I cannot choose").click().run()
    assert not app.exception
    assert workshop.read_votes("seminar-1")[0]["choice"] == "skip"
    assert any("judged all 1 pairs" in message.value for message in app.success)


def test_lecturer_sees_counts_and_agreement(tiny_lab):
    pair = workshop.add_pairs("seminar-1", PAIRS[:1])[0]
    for voter, choice in [("v1", "a"), ("v2", "a"), ("v3", "a"), ("v4", "b")]:
        workshop.record_vote("seminar-1", pair, voter, choice)
    app = _app().run()
    assert not app.exception
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Votes"] == "4"
    assert metrics["Students"] == "4"
    assert metrics["Agreement"] == "75%"
    assert any("clear majority, which become preference data: **1**" in md.value
               for md in app.markdown)


def test_generate_pairs_with_tiny_model(tiny_lab):
    app = _app().run()
    app.text_area(key="pref_prompts").set_value("Two plus two\nThe cat").run()
    _button(app, "Generate pairs").click().run()
    assert not app.exception
    pairs = workshop.read_pairs("seminar-1")
    assert 1 <= len(pairs) <= 2
    assert all(pair["model"] == app.selectbox(key="pref_model").value for pair in pairs)
    assert any(f"the session now has {len(pairs)}" in message.value for message in app.success)
    assert any(f"Pair 1 of {len(pairs)}" in caption.value for caption in app.caption)


def test_invalid_session_name_rejected(tiny_lab):
    app = _app().run()
    app.text_input(key="pref_session").set_value("../etc").run()
    assert "Invalid session name" in app.error[0].value


def test_votes_file_has_whole_lines(tiny_lab):
    workshop.add_pairs("seminar-1", PAIRS)
    for voter in ("v1", "v2"):
        app = _app(voter).run()
        _button(app, "Right is better").click().run()
    lines = workshop.votes_path("seminar-1").read_text().splitlines()
    assert len(lines) == 2
    assert {json.loads(line)["voter"] for line in lines} == {"v1", "v2"}
