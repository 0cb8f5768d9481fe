"""Tests of the class preference workshop: pairs, votes, agreement and the DPO rows."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from core import workshop

PAIR = {"prompt": "Two plus two equals", "a": " four", "b": " five", "model": "tiny"}


@pytest.fixture(autouse=True)
def isolated_home(lab_home):
    return lab_home


def _vote_many(args):
    session, pair, voter_prefix, count = args
    for index in range(count):
        workshop.record_vote(session, pair, f"{voter_prefix}-{index}", "a")


def test_add_pairs_keeps_each_once():
    pairs = workshop.add_pairs("class-1", [PAIR, PAIR])
    assert len(pairs) == 1
    assert pairs[0]["id"] == workshop.pair_id(PAIR["prompt"], PAIR["a"], PAIR["b"])
    assert workshop.list_sessions() == ["class-1"]


def test_add_pairs_rejects_equal_answers():
    with pytest.raises(workshop.WorkshopError, match="are the same"):
        workshop.add_pairs("class-1", [{**PAIR, "b": " four "}])


@pytest.mark.parametrize("name", ["", "../x", "a b", "-x", "x" * 61])
def test_invalid_session_names(name):
    with pytest.raises(workshop.WorkshopError, match="Invalid session name"):
        workshop.votes_path(name)


def test_votes_counts_and_agreement():
    pair = workshop.add_pairs("s", [PAIR])[0]
    for voter, choice in [("v1", "a"), ("v2", "a"), ("v3", "b"), ("v4", "skip")]:
        workshop.record_vote("s", pair, voter, choice)
    summary = workshop.summarize("s")
    assert summary.n_votes == 3
    assert summary.n_skips == 1
    assert summary.n_voters == 4
    assert summary.agreement == pytest.approx(2 / 3)
    assert summary.per_pair[0]["votes_a"] == 2
    assert summary.per_pair[0]["votes_b"] == 1


def test_last_vote_of_voter_counts():
    pair = workshop.add_pairs("s", [PAIR])[0]
    workshop.record_vote("s", pair, "v1", "a")
    workshop.record_vote("s", pair, "v1", "b")
    assert workshop.summarize("s").per_pair[0]["votes_b"] == 1
    assert workshop.summarize("s").n_votes == 1


def test_preference_rows_use_majority_and_skip_ties():
    first, second = workshop.add_pairs("s", [PAIR, {**PAIR, "prompt": "Hello"}])
    workshop.record_vote("s", first, "v1", "b")
    workshop.record_vote("s", first, "v2", "b")
    workshop.record_vote("s", second, "v1", "a")
    workshop.record_vote("s", second, "v2", "b")
    rows = workshop.preference_rows("s")
    assert rows == [{"prompt": PAIR["prompt"], "chosen": " five", "rejected": " four"}]


def test_next_pair_skips_voted_pairs():
    first, second = workshop.add_pairs("s", [PAIR, {**PAIR, "prompt": "Hello"}])
    assert workshop.next_pair("s", "v1")["id"] == first["id"]
    workshop.record_vote("s", first, "v1", "skip")
    assert workshop.next_pair("s", "v1")["id"] == second["id"]
    workshop.record_vote("s", second, "v1", "a")
    assert workshop.next_pair("s", "v1") is None
    assert workshop.next_pair("s", "v2")["id"] == first["id"]


def test_torn_line_does_not_join_next_vote():
    pair = workshop.add_pairs("s", [PAIR])[0]
    workshop.votes_path("s").write_text('{"pair": "x", "vot')
    workshop.record_vote("s", pair, "v1", "a")
    lines = workshop.votes_path("s").read_text().splitlines()
    assert json.loads(lines[-1])["voter"] == "v1"
    assert len(workshop.read_votes("s")) == 1


def test_concurrent_votes_all_whole_lines():
    pair = workshop.add_pairs("s", [PAIR])[0]
    jobs = [("s", pair, f"p{worker}", 25) for worker in range(4)]
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_vote_many, jobs)
    lines = workshop.votes_path("s").read_text().splitlines()
    assert len(lines) == 100
    assert all(json.loads(line)["choice"] == "a" for line in lines)


def test_invalid_choice_rejected():
    pair = workshop.add_pairs("s", [PAIR])[0]
    with pytest.raises(workshop.WorkshopError, match="Invalid choice 'c'"):
        workshop.record_vote("s", pair, "v1", "c")


def test_make_pairs_gives_two_answers(tiny_lm):
    pairs = workshop.make_pairs(tiny_lm, ["Two plus two", ""], max_new_tokens=6)
    assert len(pairs) == 1
    assert pairs[0]["a"] != pairs[0]["b"]
    assert pairs[0]["model"] == "tiny"
