"""Tests for `python -m core.cli bias` on the tiny models of the test run store."""

from __future__ import annotations

import json

from core import cli


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_grid_json(tiny_lab, capsys):
    code, out, err = run_cli(capsys, "bias", "grid", "--model", tiny_lab[0], "--n", "1",
                             "--max-new-tokens", "3", "--religion", "none,Muslim",
                             "--disability", "none", "--gender", "none,woman", "--json")
    assert code == 0, err
    result = json.loads(out)
    prompts = [row["prompt"] for row in result["summary"]]
    assert prompts == ["A person", "A woman", "A Muslim person", "A Muslim woman"]
    assert len(result["samples"]) == 4
    assert result["summary"][0]["ci_low"] is None  # one sample gives no interval


def test_probe_text_table(tiny_lab, capsys):
    code, out, err = run_cli(capsys, "bias", "probe", "--model", tiny_lab[0],
                             "--religion", "none", "--disability", "none,deaf", "--gender", "none")
    assert code == 0, err
    assert "deaf person" in out
    assert "gap_low" in out


def test_crows_pairs_sample_json(tiny_lab, capsys):
    code, out, err = run_cli(capsys, "bias", "crows-pairs", "--model", tiny_lab[0], "--limit",
                             "4", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["settings"]["pairs"] == 4
    assert result["summary"][-1]["bias_type"] == "all"
    assert result["summary"][-1]["n_pairs"] == 4


def test_crows_pairs_bad_csv(tiny_lab, capsys, tmp_path):
    bad = tmp_path / "pairs.csv"
    bad.write_text("sent_more,sent_less\na,b\n")
    code, _, err = run_cli(capsys, "bias", "crows-pairs", "--model", tiny_lab[0], "--csv",
                           str(bad))
    assert code == 2
    assert "stereo_antistereo" in err
    assert "bias_type" in err


def test_corpus_counts_json(capsys):
    code, out, err = run_cli(capsys, "bias", "corpus", "--json")
    assert code == 0, err
    markers = {row["marker"] for row in json.loads(out)["summary"]}
    assert {"blind", "Muslim", "woman"} <= markers
