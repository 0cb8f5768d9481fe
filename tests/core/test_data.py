"""Tests for core/data.py: formats, loading and validation with line numbers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from core import data

HH_RLHF = Path(__file__).resolve().parents[3] / "shared" / "data" / "hh-rlhf-harmless-base" \
    / "test.jsonl.gz"


def jsonl(*rows) -> bytes:
    return "\n".join(json.dumps(r) if not isinstance(r, str) else r for r in rows).encode()


def test_sft_prompt_completion():
    ds = data.load_sft(jsonl({"prompt": "Hi", "completion": " there"}))
    assert ds.kind == "sft"
    assert ds.rows == [data.SFTRow("Hi", " there", 1)]
    assert ds.issues == []


def test_sft_messages_split_last_reply():
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    ds = data.load_sft(jsonl({"messages": messages}))
    assert ds.rows[0].prompt == messages[:1]
    assert ds.rows[0].completion == messages[1:]


def test_missing_key_reports_line_and_field():
    ds = data.load_sft(jsonl({"prompt": "a", "completion": "b"}, {"prompt": "c"}))
    assert len(ds) == 1
    assert [(i.line, i.field, i.action) for i in ds.issues] == [(2, "completion", "dropped")]


def test_empty_completion_dropped():
    ds = data.load_sft(jsonl({"prompt": "a", "completion": "b"}, {"prompt": "a", "completion": "  "}))
    assert [(i.line, i.field) for i in ds.issues] == [(2, "completion")]
    assert "empty" in ds.issues[0].message


def test_chosen_equal_rejected_dropped():
    ds = data.load_preferences(jsonl({"prompt": "p", "chosen": " x", "rejected": " y"},
                                     {"prompt": "p", "chosen": " z", "rejected": " z"}))
    assert len(ds) == 1
    assert [(i.line, i.field, i.action) for i in ds.issues] == [(2, "rejected", "dropped")]


def test_duplicates_name_first_line():
    row = {"prompt": "p", "chosen": " x", "rejected": " y"}
    ds = data.load_preferences(jsonl(row, {"prompt": "q", "chosen": " x", "rejected": " y"}, row))
    assert len(ds) == 2
    assert ds.issues[0].line == 3
    assert "duplicate of line 1" in ds.issues[0].message


def test_bad_encoding_reports_line():
    raw = jsonl({"prompt": "a", "completion": "b"}) + b'\n{"prompt": "\xff", "completion": "c"}'
    ds = data.load_sft(raw)
    assert len(ds) == 1
    assert ds.issues[0].line == 2
    assert "UTF-8" in ds.issues[0].message


def test_invalid_json_line_reported():
    ds = data.load_sft(jsonl({"prompt": "a", "completion": "b"}, "{not json"))
    assert ds.issues[0].line == 2
    assert "invalid JSON" in ds.issues[0].message


def test_no_usable_rows_raises():
    with pytest.raises(data.DataError, match="No usable sft rows"):
        data.load_sft(jsonl({"prompt": "a"}))


def test_csv_lines_count_multiline_cells(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('prompt,chosen,rejected\n"two\nlines", yes, no\nq,,no\n', encoding="utf-8")
    ds = data.load_preferences(path)
    assert ds.rows == [data.PreferenceRow("two\nlines", " yes", " no", 2)]
    assert [(i.line, i.field) for i in ds.issues] == [(4, "chosen")]


def test_json_array_lines(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('[\n {"prompt": "a", "completion": "b"},\n\n {"prompt": "c"}\n]')
    ds = data.load_sft(path)
    assert ds.rows[0].line == 2
    assert ds.issues[0].line == 4


def test_table_rows_from_page():
    ds = data.load_sft([{"prompt": "a", "completion": "b"}, {"prompt": "", "completion": "c"}])
    assert len(ds) == 1
    assert ds.issues[0].line == 2


def test_implicit_prompt_hh_style():
    chosen = "\n\nHuman: Hi\n\nAssistant: Hello, friend."
    rejected = "\n\nHuman: Hi\n\nAssistant: Go away."
    prompt, c, r = data.split_implicit_prompt(chosen, rejected)
    assert prompt == "\n\nHuman: Hi\n\nAssistant:"
    assert (c, r) == (" Hello, friend.", " Go away.")


def test_implicit_prompt_messages():
    user = {"role": "user", "content": "Hi"}
    chosen = [user, {"role": "assistant", "content": "Hello"}]
    rejected = [user, {"role": "assistant", "content": "Go"}]
    ds = data.load_preferences([{"chosen": chosen, "rejected": rejected}])
    assert ds.rows[0].prompt == [user]
    assert ds.rows[0].chosen == chosen[1:]


def test_implicit_prompt_without_shared_text():
    ds_issues = []
    rows = data.parse_preference_rows(7, {"chosen": "abc", "rejected": "xyz"}, ds_issues)
    assert rows == []
    assert ds_issues[0].line == 7


def test_ranked_list_to_pairs():
    pairs = data.ranked_to_pairs(["a", "b", "c"], [2, 1, 3])
    assert pairs == [("b", "a"), ("b", "c"), ("a", "c")]


def test_ranked_ties_give_no_pair():
    assert data.ranked_to_pairs(["a", "b"], [1, 1]) == []


def test_ranked_rows_in_dataset():
    ds = data.load_preferences([{"prompt": "p", "responses": [" a", " b", " c"],
                                 "ranks": [1, 2, 3]}])
    assert len(ds) == 3
    assert all(row.line == 1 for row in ds.rows)


def test_content_hash_ignores_lines():
    a = data.load_sft([{"prompt": "a", "completion": "b"}])
    b = data.load_sft([{}, {"prompt": "a", "completion": "b"}])
    assert a.content_hash() == b.content_hash()


@pytest.mark.parametrize("bundled", data.list_bundled(), ids=lambda b: b.name)
def test_bundled_datasets_load_clean(bundled):
    ds = data.load_bundled(bundled.name)
    assert ds.kind == bundled.kind
    assert len(ds) >= 10
    assert ds.issues == []
    assert bundled.description


def test_bundled_names():
    names = {b.name for b in data.list_bundled()}
    assert {"arithmetic-truth", "customer-assistant", "sycophancy", "hedging",
            "tiny-chat"} <= names


def test_unknown_bundled_name():
    with pytest.raises(data.DataError, match="arithmetic-truth"):
        data.load_bundled("nope")


@pytest.mark.skipif(not HH_RLHF.is_file(), reason="public HH-RLHF sample not present")
def test_hh_rlhf_implicit_prompts():
    with gzip.open(HH_RLHF, "rb") as handle:
        lines = handle.read().split(b"\n")[:200]
    ds = data.load_preferences(b"\n".join(lines))
    assert len(ds) > 150
    for row in ds.rows:
        assert row.prompt.endswith("Assistant:")
        assert row.chosen != row.rejected
