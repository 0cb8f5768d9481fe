import io
import itertools
from pathlib import Path

import pytest

from core import crows_pairs as cp
from core.bias import BiasInputError
from tests.core.bigram import BOS, bigram_lm, bigram_logp

REAL_CSV = Path("/work/shared/data/crows-pairs/crows_pairs_anonymized.csv")


def csv_file(text: str) -> io.StringIO:
    return io.StringIO(text)


def test_score_matches_hand_computation():
    boosts = {(BOS, "women"): 1.0, ("women", "are"): 2.0, ("men", "are"): 0.5,
              ("are", "bad"): 1.0, ("are", "here"): 3.0}
    lm = bigram_lm(boosts)
    pairs = cp.load_crows_pairs(csv_file(
        "sent_more,sent_less,stereo_antistereo,bias_type\n"
        "women are bad,men are bad,stereo,gender\n"
        "men are here,women are here,antistereo,gender\n"
    ))
    scored = cp.score_crows_pairs(lm, pairs)

    def lp(*words):
        tokens = [BOS, *words]
        return sum(bigram_logp(boosts, a, b) for a, b in itertools.pairwise(tokens))

    assert scored.logp_more.tolist() == pytest.approx([lp("women", "are", "bad"),
                                                       lp("men", "are", "here")], abs=1e-5)
    assert scored.logp_less.tolist() == pytest.approx([lp("men", "are", "bad"),
                                                       lp("women", "are", "here")], abs=1e-5)
    # women-are outweighs men-are (the BOS boost too), so only the first pair prefers sent_more.
    assert scored.prefers_more.tolist() == [True, False]
    summary = cp.summarize_crows_pairs(scored).set_index("bias_type")
    assert summary.loc["gender", "n_pairs"] == 2
    assert summary.loc["gender", "n_prefers_more"] == 1
    assert summary.loc["all", "share"] == 0.5


def test_summary_per_bias_type_and_intervals():
    import pandas as pd

    scored = pd.DataFrame({"bias_type": ["age"] * 4 + ["religion"],
                           "prefers_more": [True, True, True, False, False]})
    summary = cp.summarize_crows_pairs(scored).set_index("bias_type")
    assert list(summary.index) == ["age", "religion", "all"]
    assert summary.loc["age", "share"] == 0.75
    assert summary.loc["all", "n_pairs"] == 5
    assert summary.loc["all", "n_prefers_more"] == 3
    for row in summary.itertuples():
        assert 0 <= row.ci_low <= row.share <= row.ci_high <= 1


def test_wilson_interval_known_value():
    # 8 of 10: the Wilson 95% interval is about (0.490, 0.943).
    low, high = cp.wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3)
    assert high == pytest.approx(0.9433, abs=1e-3)


def test_missing_column_named():
    with pytest.raises(BiasInputError, match=r"\['stereo_antistereo'\]") as info:
        cp.load_crows_pairs(csv_file("sent_more,sent_less,bias_type\na,b,age\n"))
    assert "Rename the columns" in str(info.value)


def test_bad_rows_rejected():
    header = "sent_more,sent_less,stereo_antistereo,bias_type\n"
    with pytest.raises(BiasInputError, match="stereo_antistereo"):
        cp.load_crows_pairs(csv_file(header + "a,b,both,age\n"))
    with pytest.raises(BiasInputError, match="rows \\[3\\]"):
        cp.load_crows_pairs(csv_file(header + "a,b,stereo,age\n,b,stereo,age\n"))
    with pytest.raises(BiasInputError, match="no rows"):
        cp.load_crows_pairs(csv_file(header))
    with pytest.raises(BiasInputError, match="could not read"):
        cp.load_crows_pairs(csv_file(""))


def test_latin1_file_names_the_fix():
    text = "sent_more,sent_less,stereo_antistereo,bias_type\ncaf\u00e9 a,caf\u00e9 b,stereo,age\n"
    with pytest.raises(BiasInputError, match="UTF-8") as info:
        cp.load_crows_pairs(io.BytesIO(text.encode("latin-1")))
    assert "could not read" in str(info.value)


def test_shipped_sample_scores(tiny_lm):
    pairs = cp.load_crows_pairs(cp.CROWS_SAMPLE_CSV)
    summary = cp.summarize_crows_pairs(cp.score_crows_pairs(tiny_lm, pairs))
    assert summary.set_index("bias_type").loc["all", "n_pairs"] == len(pairs)
    assert summary.n_pairs.iloc[:-1].sum() == len(pairs)


@pytest.mark.skipif(not REAL_CSV.exists(), reason="CrowS-Pairs data not present")
def test_real_crows_pairs_loads():
    pairs = cp.load_crows_pairs(REAL_CSV)
    assert len(pairs) == 1508
    assert list(pairs.columns) == list(cp.CROWS_COLUMNS)
    assert set(pairs.stereo_antistereo) == {"stereo", "antistereo"}
    assert pairs.bias_type.nunique() == 9


def test_pair_beyond_context_window_skipped(tiny_lm):
    long_sentence = "The cat sat on the mat. " * 40  # far beyond the 128 positions
    pairs = cp.load_crows_pairs(csv_file(
        "sent_more,sent_less,stereo_antistereo,bias_type\n"
        "The cat sat.,The dog sat.,stereo,age\n"
        f"{long_sentence},The dog sat.,stereo,age\n"
    ))
    scored = cp.score_crows_pairs(tiny_lm, pairs)
    assert scored.scored.tolist() == [True, False]
    assert scored.logp_more.notna().tolist() == [True, False]
    summary = cp.summarize_crows_pairs(scored).set_index("bias_type")
    assert summary.loc["age", "n_pairs"] == 1
    assert summary.loc["age", "n_skipped"] == 1
