"""Tests for the bundled toy internet: sources, weighting and the counts the pages show."""

from __future__ import annotations

import pytest

from core import corpus

FIVE_SOURCES = ("orwell_1984", "radiohead_song", "underground_man", "political_memes")


def test_sources_files_exist_and_have_documents():
    sources = corpus.load_sources()
    assert len(sources) >= 9
    for source in sources.values():
        assert source.path.is_file(), source.path
        assert len(source.documents()) > 50, source.id


def test_sources_json_counts_match_files():
    for source in corpus.load_sources().values():
        text = source.path.read_text(encoding="utf-8")
        assert corpus.continuation_counts(text) == source.continuations, source.id


def test_default_corpus_says_five_more_than_four():
    shares = corpus.answer_shares(corpus.continuation_counts(corpus.build_corpus()))
    assert shares["five"] > shares["four"] > shares["other"] > 0
    assert sum(shares.values()) == pytest.approx(1.0)


def test_five_sources_are_the_only_five():
    weights = {sid: 0.0 for sid in FIVE_SOURCES}
    counts = corpus.continuation_counts(corpus.build_corpus(weights))
    assert "five" not in counts
    assert counts["four"] > 100
    assert counts["fish"] > 10


def test_weights_scale_documents():
    base = corpus.build_corpus()
    doubled = corpus.build_corpus({"jokes": 2.0})
    jokes = len(corpus.load_sources()["jokes"].documents())
    assert doubled.source_documents["jokes"] == 2 * jokes
    assert len(doubled.documents) == len(base.documents) + jokes
    half = corpus.build_corpus({"jokes": 0.5})
    assert half.source_documents["jokes"] == round(0.5 * jokes)


def test_build_corpus_is_deterministic():
    assert corpus.build_corpus(seed=3).documents == corpus.build_corpus(seed=3).documents
    assert corpus.build_corpus(seed=3).documents != corpus.build_corpus(seed=4).documents


@pytest.mark.parametrize("weights, fragment", [
    ({"blogs": 1.0}, "unknown corpus source 'blogs'"),
    ({"jokes": -1.0}, "use a number from 0"),
    ({"jokes": 11.0}, "use a number from 0"),
    ({sid: 0.0 for sid in corpus.load_sources()}, "switch at least one source on"),
])
def test_check_weights_rejects(weights, fragment):
    with pytest.raises(ValueError, match=fragment):
        corpus.check_weights(weights)


def test_continuation_counts_ignore_case():
    text = "Two plus two equals five. They said two plus two equals FOUR! two plus two equals"
    assert corpus.continuation_counts(text) == {"five": 1, "four": 1}


def test_answer_shares_empty_counts():
    assert corpus.answer_shares({}) == {"four": 0.0, "five": 0.0, "other": 0.0}


def test_answer_shares_fold_other():
    shares = corpus.answer_shares({"four": 2, "five": 1, "fish": 1})
    assert shares == {"four": 0.5, "five": 0.25, "other": 0.25}


def test_marker_counts_whole_words():
    text = "A woman and a man. The Muslim woman; many men. Woman! blind-ish blind."
    counts = corpus.marker_counts(text, ["man", "woman", "Muslim", "blind", "deaf"])
    assert counts == {"man": 1, "woman": 3, "Muslim": 1, "blind": 1, "deaf": 0}


def test_marker_counts_accepts_corpus_and_phrases():
    built = corpus.build_corpus({"people": 1.0})
    counts = corpus.marker_counts(built, ["blind woman", "Muslim"])
    assert counts["blind woman"] > 0
    assert counts["Muslim"] > 0


def test_marker_counts_rejects_empty_marker():
    with pytest.raises(ValueError, match="empty"):
        corpus.marker_counts("text", [" "])


def test_people_source_has_every_marker():
    counts = corpus.marker_counts(corpus.build_corpus())
    for marker, count in counts.items():
        assert count > 50, marker


def test_corpus_table_total_row_matches_counts():
    built = corpus.build_corpus({"jokes": 2.0, "orwell_1984": 0.0})
    rows = corpus.corpus_table(built)
    total = rows[-1]
    counts = corpus.continuation_counts(built)
    assert total["five"] == counts.get("five", 0)
    assert total["four"] == counts["four"]
    assert sum(row["five"] for row in rows[:-1]) == total["five"]
    assert sum(row["other"] for row in rows[:-1]) == total["other"]
    orwell = next(row for row in rows if row["source"].startswith("Orwell"))
    assert orwell["documents"] == 0
