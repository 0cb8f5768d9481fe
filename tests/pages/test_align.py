"""AppTest of the Align page against tiny models in a temporary lab home."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import data, jobs, store, workshop

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "align.py")


def _app(timeout: float = 60) -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=timeout)
    app.query_params["owner"] = "student-1"
    return app


def _radio(app: AppTest, key: str):
    return next(radio for radio in app.radio if radio.key == key)


def test_page_renders_with_explanation(tiny_lab):
    app = _app().run()
    assert not app.exception
    assert _radio(app, "align_method").value == "DPO"
    assert "ln 2" in app.info[0].value
    assert app.selectbox(key="align_model").value in tiny_lab
    assert app.selectbox(key="align_dataset").value == "arithmetic-truth"
    assert any("usable rows" in caption.value for caption in app.caption)


def test_methods_switch_data_kind(tiny_lab):
    app = _app().run()
    _radio(app, "align_method").set_value("SFT").run()
    assert not app.exception
    names = app.selectbox(key="align_dataset").options
    assert "customer-assistant" in names
    assert "arithmetic-truth" not in names


def test_invalid_rows_listed_with_line_and_field(tiny_lab, tmp_path, monkeypatch):
    rows = [{"prompt": "Two plus two equals", "chosen": " four", "rejected": " five"},
            {"prompt": "One plus one equals", "chosen": " two"},
            {"prompt": "Two plus two equals", "chosen": " four", "rejected": " five"}]
    (tmp_path / "broken.preference.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    monkeypatch.setattr(data, "DATASETS_DIR", tmp_path)
    app = _app().run()
    assert not app.exception
    assert "2 rows have problems" in app.warning[0].value
    issues = app.dataframe[0].value
    assert list(issues["line"]) == [2, 3]
    assert issues["field"][0] == "rejected"
    assert "duplicate" in issues["message"][1]


def test_class_sessions_offered(tiny_lab):
    pair = workshop.add_pairs("seminar", [{"prompt": "Hi", "a": " hello", "b": " go away",
                                           "model": tiny_lab[0]}])[0]
    workshop.record_vote("seminar", pair, "v1", "a")
    app = _app().run()
    _radio(app, "align_source").set_value("Class preferences").run()
    assert not app.exception
    assert app.selectbox(key="align_session").value == "seminar"
    assert any("1 usable rows" in caption.value for caption in app.caption)


def test_start_runs_dpo_and_shows_result(tiny_lab):
    app = _app(timeout=120).run()
    app.slider(key="align_steps").set_value(2)
    start = next(button for button in app.button if button.label == "Start")
    assert not start.disabled
    start.click().run()
    assert not app.exception
    own = jobs.list_jobs(owner="student-1")
    assert len(own) == 1, [error.value for error in app.error]
    info = jobs.wait(own[0].id, timeout_s=180)
    assert info.state == "done", jobs.read_log(info.id)
    assert store.read_run(info.id)["parent"] == tiny_lab[0]

    app.run()
    assert not app.exception
    assert any("saved as" in message.value for message in app.success)
    assert any("Before and after" in header.value for header in app.subheader)


def test_other_owner_sees_no_jobs(tiny_lab):
    jobs.submit("selftest", {"steps": 1}, owner="someone-else", device="cpu")
    app = _app().run()
    assert not app.exception
    assert any("Your training jobs will appear here" in c.value for c in app.caption)


@pytest.fixture(autouse=True)
def stop_leftover_jobs(monkeypatch):
    monkeypatch.setattr(jobs, "STANDBY_ENABLED", False)  # no preloading process per test
    yield
    for info in jobs.list_jobs():
        if not info.finished:
            jobs.cancel(info.id, info.owner)


def test_rl_offers_reward_functions(tiny_lab):
    app = _app().run()
    _radio(app, "align_method").set_value("RL").run()
    assert not app.exception
    reward = next(box for box in app.selectbox if box.label == "Reward")
    assert "function: says_four" in reward.options
    datasets = app.selectbox(key="align_dataset").options
    assert "arithmetic-truth" in datasets
    assert "customer-assistant" in datasets


def test_class_votes_become_sft_answers(tiny_lab):
    pair = workshop.add_pairs("seminar", [{"prompt": "Hi", "a": " hello", "b": " go away",
                                           "model": tiny_lab[0]}])[0]
    workshop.record_vote("seminar", pair, "v1", "a")
    app = _app().run()
    _radio(app, "align_method").set_value("SFT").run()
    _radio(app, "align_source").set_value("Class preferences").run()
    assert not app.exception
    assert any("1 usable rows" in caption.value for caption in app.caption)


def test_preset_moves_sliders(tiny_lab):
    app = _app().run()
    app.selectbox(key="align_preset_dpo").set_value("smollm2-dpo-arithmetic-plain").run()
    assert not app.exception
    assert app.slider(key="align_steps").value == 10
    assert app.select_slider(key="align_learning_rate").value == 3e-3
    assert app.select_slider(key="align_lora_rank").value == 8
    assert app.slider(key="align_max_length").value == 32
    assert app.checkbox(key="align_nll").value is False
    app.selectbox(key="align_preset_dpo").set_value("smollm2-dpo-arithmetic").run()
    assert app.checkbox(key="align_nll").value is True
    assert any("likelihood displacement" in caption.value for caption in app.caption)


def test_table_editor_keeps_chat_messages(tiny_lab):
    app = _app().run()
    _radio(app, "align_method").set_value("SFT").run()
    _radio(app, "align_source").set_value("Edit in a table").run()
    app.selectbox(key="align_dataset").set_value("customer-assistant").run()
    assert not app.exception
    usable = [caption.value for caption in app.caption if "usable rows" in caption.value]
    expected = len(data.load_bundled("customer-assistant"))
    assert usable == [f"{expected} usable rows."]
