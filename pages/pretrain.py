"""Pretrain a tiny GPT on an editable toy internet and compare what it says with its corpus."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core import corpus, jobs, tinygpt
from core.pretrain import PretrainConfig
from dashboard import job_panel, ui

ui.setup_page(
    "Pretrain a tiny GPT",
    "A base model learns to continue text the way its training text does. Here you choose what "
    "a small toy internet says, by switching its sources on and off and giving each a weight, "
    "then train a tiny GPT on it from scratch. At the end the page sets the model's "
    "probability of \" four\" and \" five\" after *Two plus two equals* beside how often the "
    "corpus says each: the model mirrors its corpus.",
)

CHARTS = [
    job_panel.ChartSpec("Loss", ("loss/train", "loss/val"),
                        "How surprised the model is by the next token, on training text and on "
                        "held-out text it never trained on. Lower is better; the curves fall as "
                        "the model learns the corpus."),
    job_panel.ChartSpec("Speed", ("tokens_per_s",), "Tokens of text processed per second."),
]


@st.cache_data(show_spinner=False)
def corpus_stats(weights: tuple[tuple[str, float], ...]) -> pd.DataFrame:
    return pd.DataFrame(corpus.corpus_table(corpus.build_corpus(dict(weights))))


def share_frame(row: pd.Series) -> pd.DataFrame:
    total = max(1, row["four"] + row["five"] + row["other"])
    return pd.DataFrame({"answer": ["four", "five", "other"],
                         "share": [row[k] / total for k in ("four", "five", "other")]})


# Sources: a toggle and a weight for each.
st.subheader("1. What the toy internet says")
sources = corpus.load_sources()
weights: dict[str, float] = {}
for sid, source in sources.items():
    on_col, weight_col, text_col = st.columns([1, 1, 4])
    on = on_col.toggle("on", value=source.default_weight > 0, key=f"on_{sid}")
    weight = weight_col.number_input("weight", 0.0, corpus.MAX_WEIGHT, source.default_weight,
                                     step=0.5, key=f"weight_{sid}", disabled=not on)
    text_col.markdown(f"**{source.title}**: {source.description}")
    weights[sid] = weight if on else 0.0

if not any(weights.values()):
    st.info("Switch at least one source on to build a corpus.")
    st.stop()

stats = corpus_stats(tuple(sorted(weights.items())))
st.dataframe(stats, hide_index=True)
st.caption("What the weighted corpus contains, source by source: documents, words, how often "
           "\"two plus two equals\" continues with four, five or something else, and how often "
           "each marker word for religion, gender and disability appears.")
ui.download_buttons(stats, "pretrain-corpus")
total_row = stats.iloc[-1]
shares = share_frame(total_row)
share_chart = alt.Chart(shares, height=180).mark_bar().encode(
    x=alt.X("share:Q", axis=alt.Axis(format="%")), y=alt.Y("answer:N", sort=None))
st.altair_chart(share_chart, width="stretch")
st.caption("How the corpus continues \"two plus two equals\": the share of each answer among "
           f"all {int(total_row['four'] + total_row['five'] + total_row['other'])} occurrences.")
ui.download_buttons(shares, "pretrain-corpus-shares", chart=share_chart)

# Training settings and the job.
st.subheader("2. Train")
presets = list(tinygpt.PRESETS)
defaults = PretrainConfig()
left, mid, right = st.columns(3)
preset = left.selectbox("Model size", presets, index=presets.index(defaults.preset),
                        format_func=lambda p: f"{p}: {tinygpt.PRESETS[p].description}")
steps = mid.number_input("Steps", 10, 20_000, defaults.steps, step=50)
lr = right.number_input("Learning rate", 1e-5, 1e-1, defaults.lr, format="%.4f")

owner = ui.session_owner()
busy = job_panel.active_job(owner, ("pretrain",))
if busy:
    st.caption(f"Your job {busy} is still queued or running: cancel it or wait for it to "
               "finish before starting another.")
if st.button("Start training", type="primary", disabled=bool(busy)):
    config = {"preset": preset, "steps": int(steps), "lr": float(lr), "weights": weights,
              "sample_every": max(1, int(steps) // 4), "eval_every": max(1, int(steps) // 8)}
    try:
        st.session_state["pretrain_job"] = jobs.submit("pretrain", config, owner)
    except (ValueError, jobs.JobError) as err:
        st.error(str(err))

job_id = job_panel.pick_job(owner, ("pretrain",), key="pretrain_job")


def show_result(info: jobs.JobInfo) -> None:
    """Set the trained model's answer probabilities beside its corpus shares."""
    result = info.result
    if "probe/p_four" not in result:
        return
    st.subheader("3. The model mirrors its corpus")
    frame = pd.DataFrame([
        {"answer": answer, "source": source, "probability": result[f"{key}_{answer}"]}
        for answer in ("four", "five")
        for source, key in (("model", "probe/p"), ("corpus", "corpus/share"))
    ])
    chart = alt.Chart(frame, height=160).mark_bar().encode(
        x=alt.X("probability:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("source:N", title=None), row=alt.Row("answer:N", title=None),
        color=alt.Color("source:N", legend=None))
    st.altair_chart(chart)
    st.caption(f"Model {info.run_id}: its probability of \" four\" and \" five\" as the next "
               "token after \"Two plus two equals\", beside the share of each answer in the "
               "corpus it was trained on. Bars of the same length mean the model mirrors its "
               "corpus.")
    ui.download_buttons(frame, f"{info.run_id}-mirror", chart=chart)


if job_id:
    job_panel.show_job(job_id, owner, CHARTS, on_done=show_result)
else:
    st.caption("No training job yet: press Start training. It runs in the background, so you "
               "can use other pages meanwhile.")
