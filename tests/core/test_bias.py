import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from core import bias
from tests.core.bigram import bigram_lm, bigram_logp


@pytest.mark.parametrize(
    ("phrase", "article"),
    [("atheist man", "an"), ("autistic person", "an"), ("blind Muslim woman", "a"),
     ("person", "a"), ("Hindu woman", "a"), ("Unitarian", "a"), ("honest man", "an"),
     ("one-armed man", "a"), ("European", "a"), ("Orthodox Jew", "an")],
)
def test_indefinite_article(phrase, article):
    assert bias.indefinite_article(phrase) == article


def test_grid_prompts_and_baseline():
    markers = {"disability": ["none", "autistic"], "religion": ["none", "Muslim"],
               "gender": ["none", "woman"]}
    grid = bias.build_grid(markers)
    prompts = [cell.prompt for cell in grid]
    assert len(grid) == 8
    assert prompts[0] == "A person"
    assert grid[0].is_baseline
    assert "An autistic Muslim woman" in prompts
    assert "A Muslim person" in prompts
    assert "An autistic person" in prompts
    assert "A woman" in prompts
    assert sum(cell.is_baseline for cell in grid) == 1


def test_grid_adds_missing_baseline():
    grid = bias.build_grid({"disability": ["blind"], "religion": ["Jewish"], "gender": ["man"]},
                           template="{subject} worked as a")
    prompts = [cell.prompt for cell in grid]
    assert prompts == ["A person worked as a", "A blind Jewish man worked as a"]


def test_grid_rejects_bad_input():
    with pytest.raises(bias.BiasInputError, match="placeholder"):
        bias.build_grid(bias.DEFAULT_SELECTION, template="A person")
    with pytest.raises(bias.BiasInputError, match="'religion'"):
        bias.build_grid({"disability": ["none"], "religion": [], "gender": ["none"]})


def test_shipped_assets_load():
    markers = bias.load_markers()
    words = bias.load_attribute_words()
    assert all(bias.NONE in markers[axis] for axis in bias.AXES)
    assert len(words["positive"]) == len(words["negative"])
    for axis, chosen in bias.DEFAULT_SELECTION.items():
        assert set(chosen) <= set(markers[axis])


def test_vader_scores_continuation_only():
    grid = bias.build_grid({"disability": ["none", "awful"], "religion": ["none"],
                            "gender": ["none"]})
    samples = bias.run_grid(None, grid, sampler=lambda prompts: [["is here."] * 2 for _ in prompts])
    awful = samples[samples.disability == "awful"]
    vader = SentimentIntensityAnalyzer()
    assert awful.prompt.iloc[0] == "An awful person"
    assert vader.polarity_scores("An awful person is here.")["compound"] < 0
    assert (samples.compound == 0).all()


def test_grid_summary_gap():
    grid = bias.build_grid({"disability": ["none", "blind"], "religion": ["none"],
                            "gender": ["none"]})
    texts = {"A person": ["I love it.", "They went home."],
             "A blind person": ["I hate it.", "They went home."]}
    samples = bias.run_grid(None, grid, sampler=lambda prompts: [texts[p] for p in prompts])
    summary = bias.summarize_grid(samples).set_index("group")
    vader = SentimentIntensityAnalyzer()
    love = vader.polarity_scores("I love it.")["compound"]
    hate = vader.polarity_scores("I hate it.")["compound"]
    assert summary.loc["person", "mean"] == pytest.approx(love / 2)
    assert summary.loc["blind person", "gap"] == pytest.approx((hate - love) / 2)
    assert summary.loc["person", "gap"] == 0
    row = summary.loc["blind person"]
    assert row.gap_low <= row.gap <= row.gap_high


def test_probe_matches_hand_computation():
    boosts = {("person", "kind"): 2.0, ("deaf", "rude"): 1.5, ("good", "hearted"): 3.0,
              ("person", "good"): 0.5}
    lm = bigram_lm(boosts)
    words = {"positive": ["kind", "good hearted"], "negative": ["rude"]}
    table = bias.run_probe(lm, ["person", "deaf"], words, template="The {group}")
    logp = table.set_index(["group", "word"])["logp"]

    def lp(prev, nxt):
        return bigram_logp(boosts, prev, nxt)

    # "good hearted" is two tokens, so its log-prob is the sum of both.
    two_tokens = lp("person", "good") + lp("good", "hearted")
    assert logp["person", "good hearted"] == pytest.approx(two_tokens)
    assert logp["deaf", "rude"] == pytest.approx(lp("deaf", "rude"))
    summary = bias.summarize_probe(table, baseline="person").set_index("group")
    person = (lp("person", "kind") + lp("person", "good") + lp("good", "hearted")) / 2 - lp(
        "person", "rude")
    deaf = (lp("deaf", "kind") + lp("deaf", "good") + lp("good", "hearted")) / 2 - lp(
        "deaf", "rude")
    assert summary.loc["person", "score"] == pytest.approx(person, abs=1e-5)
    assert summary.loc["deaf", "score"] == pytest.approx(deaf, abs=1e-5)
    assert summary.loc["deaf", "gap"] == pytest.approx(deaf - person, abs=1e-5)
    assert summary.loc["person", "gap"] == 0
    assert list(table.n_tokens) == [1, 2, 1, 1, 2, 1]


def test_probe_intervals_contain_score(tiny_lm):
    words = bias.load_attribute_words()
    groups = ["person", "blind woman", "Muslim man"]
    summary = bias.summarize_probe(bias.run_probe(tiny_lm, groups, words))
    assert list(summary.group) == groups
    assert (summary.score_low <= summary.score).all()
    assert (summary.score <= summary.score_high).all()
    assert (summary.gap_low <= summary.gap + 1e-9).all()
    assert (summary.gap <= summary.gap_high + 1e-9).all()


def test_probe_groups_put_baseline_first():
    grid = bias.build_grid({"disability": ["blind", "none"], "religion": ["none"],
                            "gender": ["none", "man"]})
    assert bias.probe_groups(grid) == ["person", "blind person", "blind man", "man"]


def test_marker_frequencies_whole_words():
    text = "A woman and a man. The woman, a Muslim; many Muslims. Blind blind"
    table = bias.marker_frequencies(
        {"disability": ["none", "blind"], "religion": ["Muslim"], "gender": ["woman", "man"]},
        text=text,
    ).set_index("marker")
    assert table.loc["woman", "count"] == 2
    assert table.loc["man", "count"] == 1
    assert table.loc["Muslim", "count"] == 1
    assert table.loc["blind", "count"] == 2
    assert "none" not in table.index
    assert table.loc["man", "per_million"] == pytest.approx(1e6 / len(text.split()))


def test_marker_frequencies_default_corpus():
    table = bias.marker_frequencies(bias.DEFAULT_SELECTION)
    assert set(table.axis) == set(bias.AXES)
    assert (table["count"] >= 0).all()


def test_bootstrap_intervals_are_seeded():
    values = [0.1, 0.5, -0.2, 0.3]
    assert bias.bootstrap_mean_ci(values, seed=3) == bias.bootstrap_mean_ci(values, seed=3)
    low, high = bias.bootstrap_mean_ci(values)
    assert low <= sum(values) / 4 <= high
    assert bias.bootstrap_mean_ci([1.0]) != bias.bootstrap_mean_ci([1.0])  # nan, one sample


def test_probe_rejects_shared_word(tiny_lm):
    words = {"positive": ["kind", "calm"], "negative": ["calm", "rude"]}
    with pytest.raises(bias.BiasInputError, match=r"\['calm'\]"):
        bias.run_probe(tiny_lm, ["person"], words)


def test_template_with_unknown_field():
    with pytest.raises(bias.BiasInputError, match="subject"):
        bias.build_grid(bias.DEFAULT_SELECTION, template="{subject} met {friend}")


def test_marker_file_missing_axis(tmp_path):
    path = tmp_path / "markers.json"
    path.write_text('{"disability": ["none"], "gender": ["none"]}')
    with pytest.raises(bias.BiasInputError, match=r"\['religion'\]"):
        bias.load_markers(path)
