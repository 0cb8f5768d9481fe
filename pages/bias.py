"""Bias: how the chosen models write and score sentences about social groups."""

import altair as alt
import pandas as pd
import streamlit as st

from core import bias, crows_pairs
from core import paths
from dashboard import ui

ui.setup_page(
    "Bias",
    "Three ways to see whether a model treats social groups differently. The **sentiment "
    "grid** lets each model continue prompts such as \"A blind Muslim woman\" and measures how "
    "positive the continuations read. The **word probe** asks which words the model expects "
    "after \"The Muslim woman was very\": kind or cruel? **CrowS-Pairs** checks whether the "
    "model finds a stereotyping sentence likelier than the same sentence about another group. "
    "Every group is compared with the same prompt about \"a person\".",
)

names = ui.model_multiselect("Models", key="bias_models")
ui.require_models(names)
loaded = ui.get_models(names)
if not loaded:
    st.stop()

all_markers = bias.load_markers()
with st.expander("Groups in the grid and the probe"):
    markers = {axis: col.multiselect(axis.capitalize(), all_markers[axis],
                                     default=bias.DEFAULT_SELECTION[axis], key=f"bias_{axis}")
               for axis, col in zip(bias.AXES, st.columns(3))}
    st.caption("'none' leaves that part out, so 'none, none, none' is the baseline "
               "\"A person\". More groups take longer: the grid samples every combination.")
markers_key = tuple((axis, tuple(markers[axis])) for axis in bias.AXES)


@st.cache_data(show_spinner=False, max_entries=64)
def grid_tables(name: str, markers_key: tuple, n: int, tokens: int, temp: float, seed: int):
    samples = bias.run_grid(ui.cached_model(name), bias.build_grid(dict(markers_key)), n,
                            tokens, temp, seed)
    return bias.summarize_grid(samples, seed=seed).assign(model=name), samples.assign(model=name)


@st.cache_data(show_spinner=False, max_entries=64)
def probe_table(name: str, markers_key: tuple, template: str):
    groups = bias.probe_groups(bias.build_grid(dict(markers_key)))
    words = bias.run_probe(ui.cached_model(name), groups, bias.load_attribute_words(), template)
    return bias.summarize_probe(words).assign(model=name)


@st.cache_data(show_spinner=False, max_entries=32)
def crows_table(name: str, pairs: pd.DataFrame):
    scored = crows_pairs.score_crows_pairs(ui.cached_model(name), pairs)
    return crows_pairs.summarize_crows_pairs(scored).assign(model=name)


def requested(label: str, key: str, settings: tuple) -> bool:
    """Draw the button and return True once it was pressed for these settings.

    A revisit with the same settings then shows the cached result without a new press.
    """
    settings = (tuple(loaded), *settings)
    if st.button(label, type="primary", key=f"bias_{key}_run"):
        st.session_state[f"bias_{key}_done"] = settings
    return st.session_state.get(f"bias_{key}_done") == settings


def per_model(label: str, compute) -> pd.DataFrame | None:
    """Concatenate `compute(name)` over the models, or show invalid input and return None."""
    try:
        with st.spinner(f"{label} for {', '.join(loaded)}. The result is cached for later."):
            return pd.concat([compute(name) for name in loaded], ignore_index=True)
    except bias.BiasInputError as err:
        st.error(str(err))
        return None


tab_grid, tab_probe, tab_crows = st.tabs(["Sentiment grid", "Word probe", "CrowS-Pairs"])

with tab_grid:
    c1, c2, c3, c4 = st.columns(4)
    n = c1.slider("Samples per prompt", 1, 32, 4, help="More samples narrow the intervals.")
    tokens = c2.slider("Tokens per sample", 5, 60, 20)
    temp = c3.slider("Temperature", 0.1, 1.5, 1.0, 0.1)
    seed = c4.number_input("Seed", 0, 2**31 - 1, 0, help="The same seed gives the same samples.")
    settings = (markers_key, n, tokens, float(temp), int(seed))
    st.caption("Sampling is the slow part on a CPU: the time grows with the number of "
               "prompts × samples × tokens, so it starts when you press the button.")
    if requested("Sample and score", "grid", settings):
        result = per_model("Sampling", lambda m: grid_tables(m, *settings)[0])
        if result is not None:
            chart = alt.Chart(result).mark_rect().encode(
                x=alt.X("religion:N", sort=markers["religion"]),
                y=alt.Y("disability:N", sort=markers["disability"]),
                color=alt.Color("gap:Q", scale=alt.Scale(scheme="redblue", domainMid=0),
                                title="gap to 'A person'"),
                tooltip=["prompt", "n", alt.Tooltip("mean:Q", format=".3f"),
                         alt.Tooltip("gap:Q", format=".3f"), alt.Tooltip("gap_low:Q", format=".3f"),
                         alt.Tooltip("gap_high:Q", format=".3f")],
            ).properties(width=160, height=110).facet(
                row=alt.Row("model:N", sort=list(loaded)),
                column=alt.Column("gender:N", sort=markers["gender"]))
            st.altair_chart(chart)
            st.caption(
                f"Each cell: the mean VADER sentiment (from -1, very negative, to +1) of {n} "
                "sampled continuations of that prompt, minus the mean for \"A person\". Blue "
                "reads more positive than \"A person\", red more negative. Only the model's "
                "words are scored, never the prompt. Hover for the 95% interval: with few samples "
                "it is wide, and a gap whose interval contains 0 is no evidence of bias. VADER "
                "was built for English social-media posts. It scores the words and emoticons it "
                "knows, so garbled text mostly scores 0, and now and then a stray run of "
                "characters that looks like an emoticon scores.")
            ui.download_buttons(result, "bias_grid", chart, key="bias_grid")
            samples = pd.concat([grid_tables(m, *settings)[1] for m in loaded])
            st.dataframe(samples, hide_index=True, height=240)
            st.caption("Every sampled continuation and its VADER score. All models draw the "
                       "same random numbers for the same prompt, so their differences come "
                       "from the models, not from luck.")
            ui.download_buttons(samples, "bias_grid_samples", key="bias_grid_samples")

with tab_probe:
    template = st.text_input("Context", bias.PROBE_TEMPLATE, key="bias_probe_context",
                             help="Keep the {group} placeholder.")
    if requested("Score the words", "probe", (markers_key, template)):
        result = per_model("Scoring words", lambda m: probe_table(m, markers_key, template))
        if result is not None:
            base = alt.Chart().encode(y=alt.Y("group:N", sort=list(result.group.unique()),
                                              axis=alt.Axis(labelLimit=240)))
            chart = alt.layer(
                alt.Chart().mark_rule(strokeDash=[4, 4]).encode(x=alt.datum(0)),
                base.mark_rule().encode(x="gap_low:Q", x2="gap_high:Q"),
                base.mark_point(filled=True).encode(x=alt.X("gap:Q", title="gap (nats)"),
                                                    tooltip=["group", "score", "gap"]),
                data=result,
            ).properties(width=260).facet(column=alt.Column("model:N", sort=list(loaded)))
            st.altair_chart(chart)
            st.caption(
                "For each group, the mean log-probability of the positive words (kind, honest, "
                "...) minus that of the negative words (rude, cruel, ...) after the context, "
                "shown as the gap to \"The person was very\". Below 0, the model leans more "
                "towards the negative words for this group than for \"person\". Units are nats "
                "(natural log), so a gap of -0.7 means the negative words became about twice as "
                "likely relative to the positive ones. No sampling is involved. The bars are "
                "95% intervals from resampling the word lists, so they show how much the result "
                "hangs on the words chosen.")
            ui.download_buttons(result, "bias_probe", chart, key="bias_probe")
    st.markdown("**How often each group word appears in the tiny GPT's training text**")
    st.dataframe(bias.marker_frequencies(markers), hide_index=True)
    st.caption("Counts of each word in the bundled toy internet (default weights), the text the "
               "tiny GPT learned from. A rare word gives the model little to go on. SmolLM2's "
               "training data is not shipped, so these counts say nothing about SmolLM2.")

with tab_crows:
    upload = st.file_uploader("CrowS-Pairs CSV", type="csv")
    # Only files in the lab's data folder are offered: a typed server path would let any
    # visitor read files on the host.
    hosted = {p.name: p for p in sorted(paths.data_dir().glob("*.csv"))}
    named = st.selectbox(f"…or a file the host placed in {paths.data_dir()}",
                         ["(the tiny sample)", *hosted], key="bias_crows_file",
                         disabled=upload is not None)
    source = upload or hosted.get(named) or crows_pairs.CROWS_SAMPLE_CSV
    if source is crows_pairs.CROWS_SAMPLE_CSV:
        st.warning("Showing a tiny sample of 16 pairs written by this project to show the "
                   "format. It is not the CrowS-Pairs data set and measures nothing.")
    try:
        pairs = crows_pairs.load_crows_pairs(source)
    except bias.BiasInputError as err:
        st.error(str(err))
        st.stop()
    if requested(f"Score {len(pairs)} pairs", "crows", (len(pairs), tuple(pairs.sent_more[:5]))):
        result = per_model("Scoring pairs", lambda m: crows_table(m, pairs))
        if result is None:
            st.stop()
        base = alt.Chart().encode(x=alt.X("bias_type:N", title=None,
                                          sort=list(result.bias_type.unique())))
        chart = alt.layer(
            base.mark_bar(opacity=0.6).encode(
                y=alt.Y("share:Q", scale=alt.Scale(domain=[0, 1]), title="share"),
                tooltip=["bias_type", "n_pairs", "n_prefers_more", "share"]),
            base.mark_rule().encode(y="ci_low:Q", y2="ci_high:Q"),
            alt.Chart().mark_rule(strokeDash=[4, 4]).encode(y=alt.datum(0.5)),
            data=result,
        ).properties(width=320, height=200).facet(
            facet=alt.Facet("model:N", sort=list(loaded)), columns=2)
        st.altair_chart(chart)
        st.caption(
            "Share of pairs where the model gives the more stereotyping sentence the higher "
            "total log-probability. 0.5 (dashed) means no preference, and above 0.5 the model "
            "prefers the stereotype. Lines are 95% intervals: with few pairs of a type they are "
            "wide. Total log-probability favours the sentence with fewer tokens, which matters "
            "most for a small tokenizer such as the tiny GPT's.")
        skipped = result[result.bias_type == "all"].set_index("model")["n_skipped"]
        for model, count in skipped[skipped > 0].items():
            st.caption(f"{model}: {count} pairs are longer than its context window and were "
                       "left out.")
        ui.download_buttons(result, "bias_crows_pairs", chart, key="bias_crows")
