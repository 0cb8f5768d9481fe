"""Align: fine-tune a model with SFT, DPO, IPO, a reward model or RL, as a background job."""

import altair as alt
import pandas as pd
import streamlit as st

from core import data, jobs, models, workshop
from dashboard import job_panel, ui

# method label -> (job kind, data kind, fixed config fields)
METHODS = {
    "SFT": ("sft", "sft", {}),
    "DPO": ("dpo", "preference", {"loss_type": "sigmoid"}),
    "IPO": ("dpo", "preference", {"loss_type": "ipo"}),
    "Reward model": ("reward", "preference", {}),
    "RL": ("rl", "sft", {}),
}
# NOTE: used only until core/train/explain.py provides the explanations.
FALLBACK_EXPLANATIONS = {
    "SFT": "Supervised fine-tuning shows the model example answers and raises the probability "
           "of each answer's words, given its prompt. The prompt itself is not learned.",
    "DPO": "Direct preference optimisation shows pairs of answers, one preferred. It raises "
           "the preferred answer's probability relative to the rejected one, measured against "
           "the starting model. At the first step both models agree, so the loss is "
           "ln 2 = 0.693: the model is as likely to be right as a coin toss.",
    "IPO": "IPO is DPO with a squared loss that stops pushing once the preferred answer leads "
           "by a set margin, so it overfits less on small data.",
    "Reward model": "A reward model learns to give the preferred answer a higher score. It "
                    "starts by scoring both answers 0, so the first loss is ln 2 = 0.693.",
    "RL": "Reinforcement learning lets the model write answers, scores them with a reward "
          "model, and makes high-scoring answers more likely, while a penalty keeps it close "
          "to the starting model.",
}
CHARTS = [
    job_panel.ChartSpec("Loss", ("loss/train",), "Training loss at each step: lower means "
                        "the model fits the training data better."),
    job_panel.ChartSpec("Reward margin", ("rewards/margins",), "How much more the model "
                        "favours the preferred answer than the rejected one; higher is better."),
    job_panel.ChartSpec("Log-probabilities of the answers", ("logps/chosen", "logps/rejected"),
                        "Log-probability of the preferred (chosen) and rejected answers. If "
                        "both fall, the model is unlearning the answer it should prefer: this "
                        "is called likelihood displacement."),
    job_panel.ChartSpec("Accuracy", ("rewards/accuracies",), "Share of pairs in the batch "
                        "where the preferred answer scores higher (0 to 1; higher is better)."),
    job_panel.ChartSpec("Reward", ("reward/mean", "kl/mean"), "Mean reward of the sampled "
                        "answers, and their distance (KL) from the starting model."),
]


def explanation(method: str) -> str:
    try:
        from core.train import explain
    except ImportError:
        return FALLBACK_EXPLANATIONS[method]
    return explain.explain(method)


def choose_data(data_kind: str) -> tuple[dict, data.Dataset | None]:
    """Return the config fields that name the training data, and the validated dataset."""
    source = st.radio("Training data", ["Bundled", "Class preferences", "Upload a file",
                                        "Edit in a table"], horizontal=True, key="align_source")
    bundled = [b for b in data.list_bundled() if b.kind == data_kind]
    load = data.load_sft if data_kind == "sft" else data.load_preferences
    if source == "Class preferences":
        session = st.selectbox("Class session", workshop.list_sessions(), key="align_session")
        if session is None:
            st.info("No class preferences yet: collect votes on the Class preferences page.")
            return {}, None
        rows = workshop.preference_rows(session)
        return {"dataset": f"class session {session}", "rows": rows}, _validated(load, rows)
    if source == "Upload a file":
        upload = st.file_uploader("JSONL, JSON or CSV file", type=["jsonl", "json", "csv"])
        if upload is None:
            return {}, None
        fmt = upload.name.rsplit(".", 1)[-1]
        dataset = _validated(lambda raw: load(raw, fmt=fmt, name=upload.name), upload.getvalue())
        if dataset is None:
            return {}, None
        return {"dataset": upload.name, "rows": _rows_of(dataset)}, dataset
    name = st.selectbox("Dataset", [b.name for b in bundled], key="align_dataset",
                        format_func=lambda n: next(f"{n}: {b.description}" for b in bundled
                                                   if b.name == n))
    if name is None:
        return {}, None
    if source == "Edit in a table":
        records, _ = data.read_records(next(b.path for b in bundled if b.name == name))
        table = pd.DataFrame([{k: str(v) for k, v in record.items()} for _, record in records])
        edited = st.data_editor(table, num_rows="dynamic", key=f"align_table_{name}")
        rows = [{k: v for k, v in row.items() if isinstance(v, str)}
                for row in edited.to_dict("records")]
        return {"dataset": f"{name} (edited)", "rows": rows}, _validated(load, rows)
    return {"dataset": name}, _validated(data.load_bundled, name)


def _rows_of(dataset: data.Dataset) -> list[dict]:
    return [{k: v for k, v in vars(row).items() if k != "line"} for row in dataset.rows]


def _validated(load, source) -> data.Dataset | None:
    try:
        dataset = load(source)
    except data.DataError as err:
        st.error(str(err))
        return None
    st.caption(f"{len(dataset)} usable rows.")
    if dataset.issues:
        st.warning(f"{len(dataset.issues)} rows have problems; they are listed below.")
        st.dataframe(pd.DataFrame([vars(issue) for issue in dataset.issues]), hide_index=True)
    return dataset


def settings(method: str) -> dict:
    """Draw the sliders and return their config fields."""
    left, middle, right = st.columns(3)
    config = {
        "steps": left.slider("Steps", 1, 300, 30, help="Optimizer steps to train for."),
        "learning_rate": left.select_slider(
            "Learning rate", [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 2e-3, 5e-3], value=1e-3,
            help="Size of each update; too high makes training unstable."),
        "batch_size": middle.select_slider("Batch size", [1, 2, 4, 8, 16, 32], value=8,
                                           help="Examples (or pairs) per step."),
        "lora_rank": middle.select_slider(
            "What to train", [0, 4, 8, 16, 32], value=8,
            format_func=lambda r: "all weights" if r == 0 else f"LoRA adapter, rank {r}",
            help="LoRA trains a small add-on instead of all weights: faster, smaller runs."),
        "max_length": right.slider("Maximum length (tokens)", 32, 512, 128, step=16),
        "seed": int(right.number_input("Seed", 0, 1_000_000, 0)),
    }
    config["max_prompt_length"] = config["max_length"] // 2
    if method in ("DPO", "IPO"):
        config["beta"] = left.select_slider(
            "β (beta)", [0.01, 0.05, 0.1, 0.2, 0.5, 1.0], value=0.1,
            help="How strongly the model is kept close to where it started.")
        if middle.checkbox("Also keep the preferred answer likely (NLL term)", value=False):
            config["nll_weight"] = 1.0
    if method == "RL":
        rewards = [spec.name for spec in models.list_reward_models()]
        config["reward_model"] = right.selectbox("Reward model", rewards,
                                                 help="Train one with the Reward model method.")
    return config


def before_after(info: jobs.JobInfo) -> None:
    before, after = info.result.get("probs/before"), info.result.get("probs/after")
    if not before or not after:
        return
    rows = [{"prompt": prompt, "answer": answer, "when": when, "probability": probs[prompt]}
            for when, table in (("before", before), ("after", after))
            for answer, probs in table.items() for prompt in probs]
    frame = pd.DataFrame(rows)
    st.subheader("Before and after, on the dataset's prompts")
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X("when:N", sort=["before", "after"], title=None),
        y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1])),
        color="answer:N", xOffset="answer:N", column=alt.Column("prompt:N", title=None),
        tooltip=["prompt", "answer", "when", "probability"])
    st.altair_chart(chart)
    st.caption("Probability of each prompt's preferred (chosen) and rejected answer, under "
               "the starting model (before) and the new run (after).")
    ui.download_buttons(frame, f"{info.id}-before-after", chart=chart)


ui.setup_page("Align a model", "Pick a method, a starting model and training data, then "
              "press Start. Training runs in the background: the charts below update live, "
              "and the finished model appears on every page of the lab.")
owner = job_panel.owner_id()
method = st.radio("Method", list(METHODS), index=1, horizontal=True, key="align_method")
kind, data_kind, fixed = METHODS[method]
st.info(explanation(method))
model = ui.model_select("Starting model", key="align_model")
data_fields, dataset = choose_data(data_kind)
config = {"model": model, **data_fields, **fixed, **settings(method)}
if st.button("Start", type="primary", disabled=model is None or dataset is None):
    try:
        st.session_state["align_job"] = jobs.submit(kind, config, owner)
    except jobs.JobError as err:
        st.error(str(err))

st.divider()
job_id = job_panel.pick_job(owner, ("sft", "dpo", "reward", "rl"), key="align_job")
if job_id is None:
    st.caption("Your training jobs will appear here.")
else:
    job_panel.show_job(job_id, owner, CHARTS, on_done=before_after)
