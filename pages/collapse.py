"""Collapse and diversity: does alignment make a model's representations and outputs narrower?"""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core import collapse, diversity, geometry
from core import device as device_lib
from core.prompt_sets import load_prompts
from dashboard import ui

# Tableau 10 without its grey, which marks the Gaussian nulls.
MODEL_PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1"]
NULL_GREY = "#9d9d9d"

ui.setup_page(
    "Collapse and diversity",
    "Does alignment make a model *one-dimensional*? The first part feeds the same prompts to "
    "each model and measures how widely its inner representations (hidden states) spread: a "
    "collapsed model maps very different prompts to similar points. The second part samples "
    "answers and measures how varied they are. Published studies disagree on whether "
    "alignment narrows representations, so several indicators are shown side by side, each "
    "with a 95% interval and a random baseline.",
)

names = ui.model_multiselect("Models", key="collapse_models")
ui.require_models(names)
full = len(load_prompts())
on_gpu = device_lib.pick_device().type == "cuda"
left, mid, right = st.columns(3)
n_prompts = left.slider("Number of prompts (N)", 64, full, full if on_gpu else 256, step=64,
                        help="More prompts give steadier numbers but take longer.")
pooling = mid.radio("One vector per prompt from", list(collapse.POOLINGS),
                    format_func=collapse.POOLINGS.get)
depth = right.select_slider("Layer", [0.0, 0.25, 0.5, 0.75, 1.0], value=1.0,
                            format_func=lambda d: {0.0: "embeddings", 1.0: "final"}.get(
                                d, f"{d:.0%} deep"))
settings = collapse.CollapseSettings(pooling=pooling, depth=depth)
prompts = load_prompts(n_prompts)
loaded = ui.get_models(names)
if not loaded:
    st.stop()


@st.cache_data(show_spinner=False, max_entries=64)
def measure(name: str, texts: tuple[str, ...], settings_key: str, _lm, _settings):
    return collapse.model_geometry(_lm, list(texts), _settings)


results = []
for name, lm in loaded.items():
    with st.spinner(f"Reading hidden states of {name} for {n_prompts} prompts..."):
        results.append(measure(name, tuple(prompts["text"]), repr(settings), lm, settings))
nulls = {r.dim: collapse.null_geometry(n_prompts, r.dim, settings) for r in results}
# One colour per model in every chart and exported PNG, nulls in grey, legends in the
# order of the selection. Full names: the SFT and DPO names share a long prefix.
model_order = [r.model for r in results] + [n.model for n in nulls.values()]
colours = [MODEL_PALETTE[i % len(MODEL_PALETTE)] for i in range(len(results))]
MODEL_COLOUR = alt.Color("model:N", legend=alt.Legend(labelLimit=320), scale=alt.Scale(
    domain=model_order, range=colours + [NULL_GREY] * len(nulls)))
MAP_COLOUR = alt.Color("model:N", legend=alt.Legend(labelLimit=320), scale=alt.Scale(
    domain=[r.model for r in results], range=colours))  # the map has no null points

st.subheader("How spread out are the hidden states?")
table = collapse.metric_table(results + list(nulls.values()))
cells = table.assign(cell=[f"{v:.3g} [{lo:.3g}, {hi:.3g}]"
                           for v, lo, hi in zip(table["value"], table["low"], table["high"])])
wide = cells.pivot(index="label", columns="model", values="cell")[model_order]
wide.insert(0, "more collapsed when", cells.groupby("label")["more_collapsed_when"].first())
st.dataframe(wide, width="stretch")
st.caption(
    f"Each cell is the value with its 95% bootstrap interval over the **N = {n_prompts}** "
    "prompts. The Gaussian null is random noise of the same shape: no structure at all. "
    "These metrics depend on N (N points span at most N - 1 directions), so compare models "
    "only at the same N. The first column says which direction means *more collapsed*."
)
ui.download_buttons(table, f"collapse_metrics_N{n_prompts}", key="collapse_table")

st.subheader("Layer by layer")
metric = st.selectbox("Metric", list(geometry.METRICS),
                      format_func=lambda m: geometry.METRICS[m].label)
curve = pd.concat([r.layer_curve.assign(model=r.model) for r in results])
curve = curve[curve["metric"] == metric]
null_rule = pd.DataFrame([{"model": n.model, "value": n.table.set_index("metric").loc[metric, "value"]}
                          for n in nulls.values()])
lines = alt.Chart(curve).mark_line(point=True).encode(
    x=alt.X("depth:Q", title="depth (0 = embeddings, 1 = final layer)"),
    y=alt.Y("value:Q", title=geometry.METRICS[metric].label), color=MODEL_COLOUR,
    tooltip=["model", "layer", "value"])
rule = alt.Chart(null_rule).mark_rule(strokeDash=[6, 4], color="gray").encode(
    y="value:Q", tooltip=["model", "value"])
layer_chart = (lines + rule).properties(height=320)
st.altair_chart(layer_chart, width="stretch")
st.caption(
    f"{geometry.METRICS[metric].label.capitalize()} at every layer, for N = {n_prompts} "
    f"prompts. The dashed line is random noise of the same size. More collapsed is "
    f"{geometry.METRICS[metric].collapsed_when}. Depth is a share of each model's layers, so "
    "models of different depth line up."
)
ui.download_buttons(curve, f"collapse_layers_{metric}", chart=layer_chart, key="collapse_layers")

st.subheader("Spectrum: how much each direction carries")
spectra = pd.concat([
    pd.DataFrame({"model": r.model, "component": np.arange(1, len(r.spectrum) + 1),
                  "share": r.spectrum}) for r in results + list(nulls.values())])
spectra = spectra[(spectra["share"] > 0) & (spectra["component"] <= 200)]
spectrum_chart = alt.Chart(spectra).mark_line().encode(
    x=alt.X("component:Q", title="direction (largest first)"),
    y=alt.Y("share:Q", scale=alt.Scale(type="log"), title="share of all singular values"),
    color=MODEL_COLOUR, tooltip=["model", "component", "share"]).properties(height=320)
st.altair_chart(spectrum_chart, width="stretch")
st.caption(
    f"Each curve sorts the directions of a model's cloud of hidden states for the N = "
    f"{n_prompts} prompts from strongest to weakest (first 200 shown, log scale). A steep "
    "drop means a few directions dominate, which is what collapse looks like; random noise "
    "gives the flattest curve. The curve's length and shape depend on N."
)
ui.download_buttons(spectra, "collapse_spectra", chart=spectrum_chart, key="collapse_spectra")

st.subheader("Map of the prompts")
points, skipped = collapse.joint_pca(results, prompts[["kind", "category", "text"]])
if skipped:
    st.info(f"Left out of the map because their hidden states have another width: {skipped}.")
colour = st.radio("Colour by", ["model", "category", "kind"], horizontal=True)
scatter = alt.Chart(points).mark_circle(size=30, opacity=0.6).encode(
    x=alt.X("pc1:Q", title="first shared direction"),
    y=alt.Y("pc2:Q", title="second shared direction"),
    color=MAP_COLOUR if colour == "model" else alt.Color(
        f"{colour}:N", legend=alt.Legend(labelLimit=320)),
    tooltip=["model", "category", "text"]).properties(height=420)
scatter = scatter.facet(column="model:N") if colour != "model" else scatter
st.altair_chart(scatter)
explained = points.attrs.get("explained", [0, 0])
st.caption(
    f"Every dot is one prompt in one model, placed by a single map fitted on all models' "
    f"points together, so positions can be compared across models. The two directions show "
    f"{explained[0]:.0%} and {explained[1]:.0%} of the variation. A model whose dots bunch "
    "together, or whose categories overlap, treats different prompts more alike."
)
ui.download_buttons(points, "collapse_pca", chart=scatter, key="collapse_pca")

st.subheader("How varied are the answers?")
st.markdown(
    "Sampling is slow on a CPU, so this part runs only when you press the button. Every "
    f"model is measured with the same ruler: the tokenizer and middle layer of **{names[0]}**, "
    "which is also the reference for the KL divergence."
)
d_left, d_mid, d_right = st.columns(3)
n_div = d_left.number_input("Prompts", 2, 64, 6)
n_samples = d_mid.number_input("Samples per prompt", 2, 16, 4)
length = d_right.number_input("Tokens per sample", 4, 64, 16)
div_settings = diversity.DiversitySettings(n_samples=int(n_samples), length=int(length))


@st.cache_data(show_spinner=False, max_entries=32)
def sample_scores(name: str, reference: str, texts: tuple[str, ...], settings_key: str, _lm, _ref,
                  _settings):
    return diversity.cached_diversity(_lm, list(texts), _ref, _settings)


# A press stores the models and settings it measured. Later reruns show that result only while
# they are unchanged, so moving a setting never starts a minute of sampling by itself.
div_request = (tuple(loaded), int(n_div), repr(div_settings))
if st.button("Sample and measure diversity", type="primary"):
    st.session_state["div_request"] = div_request
if st.session_state.get("div_request", div_request) != div_request:
    st.info("The models or settings changed: press the button to sample again.")
elif "div_request" in st.session_state:
    reference = loaded[names[0]] if names[0] in loaded else next(iter(loaded.values()))
    texts = tuple(load_prompts(int(n_div))["text"])
    frames = []
    for name, lm in loaded.items():
        with st.spinner(f"Sampling from {name}..."):
            frames.append(sample_scores(name, reference.name, texts, repr(div_settings), lm,
                                        reference, div_settings))
    div_table = pd.concat([f[0] for f in frames], ignore_index=True)
    div_table["cell"] = [f"{v:.3g}" if np.isnan(lo) else f"{v:.3g} [{lo:.3g}, {hi:.3g}]"
                         for v, lo, hi in zip(div_table["value"], div_table["low"],
                                              div_table["high"])]
    shown = div_table.pivot(index=["temperature", "scope", "label"], columns="model",
                            values="cell")
    st.dataframe(shown, width="stretch")
    st.caption(
        f"{int(n_div)} prompts, {int(n_samples)} samples each, every sample exactly "
        f"{int(length)} tokens long, at temperatures 1.0 and 0.7. *Within prompt* compares "
        "the samples for one prompt (mean over prompts, with a 95% interval); *across "
        "prompts* compares the first sample of every prompt. Lower distinct-n, EAD, "
        "embedding diversity, variety, entropy and branching factor, and higher self-BLEU, "
        "mean less diverse output; KL shows how far a model moved from the reference."
    )
    ui.download_buttons(div_table.drop(columns=["cell"]), "diversity_metrics", key="div_table")
    with st.expander("Read the samples"):
        st.dataframe(pd.concat([f[1] for f in frames], ignore_index=True), width="stretch")
