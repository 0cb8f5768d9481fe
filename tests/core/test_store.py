"""Tests of the run store: landing, listing, reading and deleting runs."""

from __future__ import annotations

import json

import pytest

from core import store


@pytest.fixture(autouse=True)
def isolated_home(lab_home):
    """Run every test against an empty lab home (the `lab_home` fixture of conftest.py)."""
    return lab_home


def _output(tmp_path, name="out", run_json=None):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    if run_json is not None:
        (folder / "run.json").write_text(json.dumps(run_json))
    return folder


def test_land_moves_folder_and_writes_meta(tmp_path):
    output = _output(tmp_path, run_json={"stage": "dpo", "weights": "lora", "family": "tiny"})
    target = store.land(output, "run-1", {"parent": "tiny-base", "metrics": {"loss/train": 0.2}})
    assert target == store.run_path("run-1")
    assert not output.exists()
    assert (target / "model.safetensors").read_bytes() == b"weights"
    meta = store.read_run("run-1")
    assert meta["id"] == "run-1"
    assert meta["stage"] == "dpo"
    assert meta["weights"] == "lora"
    assert meta["family"] == "tiny"
    assert meta["parent"] == "tiny-base"
    assert meta["metrics"] == {"loss/train": 0.2}
    assert meta["created"].endswith("+00:00")


def test_land_rejects_empty_output(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(store.StoreError, match="contains no checkpoint files"):
        store.land(empty, "run-1", {})
    assert not store.run_path("run-1").exists()


def test_land_rejects_existing_run(tmp_path):
    store.land(_output(tmp_path, "a"), "run-1", {})
    with pytest.raises(store.StoreError, match="already exists"):
        store.land(_output(tmp_path, "b"), "run-1", {})


def test_list_runs_filters_by_stage(tmp_path):
    store.land(_output(tmp_path, "a"), "policy", {"stage": "sft", "created": "ignored"})
    store.land(_output(tmp_path, "b"), "scorer", {"stage": "reward"})
    assert sorted(meta["id"] for meta in store.list_runs()) == ["policy", "scorer"]
    assert [meta["id"] for meta in store.list_runs(stage="reward")] == ["scorer"]
    assert store.read_run("policy")["created"] != "ignored"


def test_list_runs_skips_hidden_and_broken(tmp_path, lab_home):
    store.land(_output(tmp_path), "good", {})
    (lab_home / "runs" / ".good.incoming-1").mkdir()
    broken = lab_home / "runs" / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    assert [meta["id"] for meta in store.list_runs()] == ["good"]


def test_read_run_missing_names_run():
    with pytest.raises(store.StoreError, match="'nothing' not found"):
        store.read_run("nothing")


def test_delete_run_removes_folder(tmp_path):
    store.land(_output(tmp_path), "gone", {})
    store.delete_run("gone")
    assert not store.run_exists("gone")
    assert store.list_runs() == []
    with pytest.raises(store.StoreError, match="not found"):
        store.delete_run("gone")


@pytest.mark.parametrize("bad_id", ["", "../escape", "a/b", ".hidden", "x" * 101])
def test_invalid_run_ids_rejected(bad_id):
    with pytest.raises(store.StoreError, match="Invalid run id"):
        store.run_path(bad_id)


def test_data_hash_of_rows_ignores_key_order(tmp_path):
    rows_a = [{"prompt": "p", "chosen": "c", "rejected": "r"}]
    rows_b = [{"rejected": "r", "chosen": "c", "prompt": "p"}]
    assert store.data_hash(rows_a) == store.data_hash(rows_b)
    assert store.data_hash(rows_a) != store.data_hash([{"prompt": "q"}])
    data_file = tmp_path / "data.jsonl"
    data_file.write_text("line\n")
    assert store.data_hash(data_file) == store.data_hash(str(data_file))
    assert len(store.data_hash(data_file)) == 64
