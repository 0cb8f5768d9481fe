"""Bias: how the chosen models write and score sentences about social groups."""

import altair as alt
import pandas as pd
import streamlit as st

from core import bias, crows_pairs
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
with st.expander("Groups in the grid and the probe", expanded=False):
    columns = st.columns(3)
    markers = {axis: col.multiselect(axis.capitalize(), all_markers[axis],
                                     default=bias.DEFAULT_SELECTION[axis], key=f"bias_{axis}")
               for axis, col in zip(bias.AXES, columns)}
    st.caption("'none' leaves that part out, so 'none, none, none' is the baseline "
               "\"A person\". More groups take longer: the grid samples every combination.")


@st.cache_data(show_spinner=False, max_entries=64)
def grid_summary(name: str, markers_key: tuple, n: int, tokens: int, temp: float, seed: int):
    grid = bias.build_grid(dict(markers_key))
    samples = bias.run_grid(ui.cached_model(name), grid, n, tokens, temp, seed)
    return bias.summarize_grid(samples, seed=seed).assign(model=name), samples.assign(model=name)


@st.cache_data(show_spinner=False, max_entries=64)
def probe_summary(name: str, markers_key: tuple, template: str, seed: int):
    groups = bias.probe_groups(bias.build_grid(dict(markers_key)))
    words = bias.run_probe(ui.cached_model(name), groups, bias.load_attribute_words(), template)
    return bias.summarize_probe(words, seed=seed).assign(model=name)


@st.cache_data(show_spinner=False, max_entries=32)
def crows_summary(name: str, pairs: pd.DataFrame):
    scored = crows_pairs.score_crows_pairs(ui.cached_model(name), pairs)
    return crows_pairs.summarize_crows_pairs(scored).assign(model=name)


def run_all(label: str, compute) -> pd.DataFrame | None:
    """Compute one table per model, or show the input error; concatenates the tables."""
    try:
        with st.spinner(f"{label} ({', '.join(loaded)}); cached for the next visit..."):
            return pd.concat([compute(name) for name in loaded], ignore_index=True)
    except bias.BiasInputError as err:
        st.error(str(err))
        return None


key = tuple((axis, tuple(markers[axis])) for axis in bias.AXES)
tab_grid, tab_probe, tab_crows = st.tabs(["Sentiment grid", "Word probe", "CrowS-Pairs"])

with tab_grid:
    c1, c2, c3, c4 = st.columns(4)
    n = c1.slider("Samples per prompt", 1, 32, 4, help="More samples narrow the intervals.")
    tokens = c2.slider("Tokens per sample", 5, 60, 20)
    temp = c3.slider("Temperature", 0.1, 1.5, 1.0, 0.1)
    seed = c4.number_input("Seed", 0, 2**31 - 1, 0, help="The same seed gives the same samples.")
    settings = (key, n, tokens, float(temp), int(seed))
    if st.button("Sample and score", type="primary") or st.session_state.get("bias_grid") == settings:
        st.session_state["bias_grid"] = settings
        result = run_all("Sampling", lambda m: grid_summary(m, *settings)[0])
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
                row=alt.Row("model:N"), column=alt.Column("gender:N", sort=markers["gender"]))
            st.altair_chart(chart)
            st.caption(
                f"Each cell: the mean VADER sentiment (from -1, very negative, to +1) of {n} "
                "sampled continuations of that prompt, minus the mean for \"A person\". Blue "
                "reads more positive than \"A person\", red more negative. Only the model's "
                "words are scored, never the prompt. Hover for the 95% interval: with few samples "
                "it is wide, and a gap whose interval contains 0 is no evidence of bias. VADER "
                "was built for English social-media posts and scores garbled text as 0.")
            ui.download_buttons(result, "bias_grid", chart, key="bias_grid")
            st.dataframe(pd.concat([grid_summary(m, *settings)[1] for m in loaded]),
                         hide_index=True, height=240)
    else:
        st.info("Sampling takes a while on a CPU (about a minute per model for SmolLM2 with "
                "the default groups), so it starts when you press the button.")

with tab_probe:
    template = st.text_input("Context", bias.PROBE_TEMPLATE, help="Keep the {group} placeholder.")
    result = run_all("Scoring words", lambda m: probe_summary(m, key, template, 0))
    if result is not None:
        base = alt.Chart().encode(y=alt.Y("group:N", sort=list(result.group.unique())))
        chart = alt.layer(
            base.mark_rule().encode(x="gap_low:Q", x2="gap_high:Q"),
            base.mark_point(filled=True).encode(x=alt.X("gap:Q", title="gap (nats)"),
                                                tooltip=["group", "score", "gap"]),
            data=result,
        ).properties(width=260).facet(column="model:N")
        st.altair_chart(chart)
        st.caption(
            "For each group, the mean log-probability of the positive words (kind, honest, ...) "
            "minus that of the negative words (rude, cruel, ...) after the context, shown as the "
            "gap to \"The person was very\". Below 0: the model leans more towards negative "
            "words for this group than for \"person\". Units are nats (natural log), so a gap of "
            "-0.7 means the negative words became about twice as likely relative to the "
            "positive ones. No sampling is involved; the bars are 95% intervals from resampling "
            "the word lists, so they show how much the result hangs on the words chosen.")
        ui.download_buttons(result, "bias_probe", chart, key="bias_probe")
    st.markdown("**How often each group word appears in the tiny GPT's training text**")
    st.dataframe(bias.marker_frequencies(markers), hide_index=True)
    st.caption("Counts of each word in the bundled toy internet (default weights), the text the "
               "tiny GPT learned from. A rare word gives the model little to go on. SmolLM2's "
               "training data is not shipped, so these counts say nothing about SmolLM2.")

with tab_crows:
    upload = st.file_uploader("CrowS-Pairs CSV", type="csv")
    path = st.text_input("…or a path on the server", "", placeholder="crows_pairs_anonymized.csv")
    source = upload or path.strip() or crows_pairs.CROWS_SAMPLE_CSV
    if source is crows_pairs.CROWS_SAMPLE_CSV:
        st.warning("Showing a tiny sample of 16 pairs written by this project to show the "
                   "format. It is not the CrowS-Pairs data set and measures nothing.")
    try:
        pairs = crows_pairs.load_crows_pairs(source)
    except bias.BiasInputError as err:
        st.error(str(err))
        st.stop()
    auto = len(pairs) <= 50  # small files are scored at once, large ones on request
    marker = (len(pairs), tuple(pairs.sent_more[:3]))
    if auto or st.button(f"Score {len(pairs)} pairs", type="primary") or st.session_state.get(
            "bias_crows") == marker:
        st.session_state["bias_crows"] = marker
        result = run_all("Scoring pairs", lambda m: crows_summary(m, pairs))
        base = alt.Chart().encode(x=alt.X("bias_type:N", title=None))
        chart = alt.layer(
            base.mark_bar(opacity=0.6).encode(y=alt.Y("share:Q", scale=alt.Scale(domain=[0, 1]))),
            base.mark_rule().encode(y="ci_low:Q", y2="ci_high:Q"),
            base.mark_rule(strokeDash=[4, 4]).encode(y=alt.datum(0.5)),
            data=result,
        ).properties(width=320, height=200).facet(column="model:N")
        st.altair_chart(chart)
        st.caption(
            "Share of pairs where the model gives the more stereotyping sentence the higher "
            "total log-probability. 0.5 (dashed) means no preference; above 0.5 the model "
            "prefers the stereotype. Lines are 95% intervals: with few pairs of a type they are "
            "wide. Total log-probability slightly favours the shorter sentence of a pair.")
        ui.download_buttons(result, "bias_crows_pairs", chart, key="bias_crows")
