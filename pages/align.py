"""Align: fine-tune a model with SFT, DPO, IPO, a reward model or RL, as a background job."""

import json

import altair as alt
import pandas as pd
import streamlit as st

from core import data, jobs, models, workshop
from core.train import explain, presets
from dashboard import job_panel, ui

# method label -> (job kind, data kind, key in core.train.explain, fixed config fields)
METHODS = {
    "SFT": ("sft", "sft", "sft", {}),
    "DPO": ("dpo", "preference", "dpo", {"loss_type": "sigmoid"}),
    "IPO": ("dpo", "preference", "ipo", {"loss_type": "ipo"}),
    "Reward model": ("reward", "preference", "reward", {}),
    "RL": ("rl", "any", "rl", {}),  # only the prompts are used
}
# Slider defaults, also the session-state keys of the sliders (a preset overwrites them).
DEFAULTS = {"steps": 30, "learning_rate": 2e-3, "batch_size": 8, "lora_rank": 8,
            "max_length": 128, "seed": 0, "beta": 0.1, "nll": True}
# NOTE: the NLL term starts on because plain DPO on the small bundled datasets usually lowers
# the preferred answers too (likelihood displacement); switching it off shows that lesson.
# Preset settings that have no slider; they go into the config as they are.
PRESET_EXTRAS = ("max_prompt_length", "sample_every", "sample_max_new_tokens", "lora_alpha")
CHARTS = [
    job_panel.ChartSpec("Loss", ("loss/train", "loss/dpo"), "Training loss at each step: lower "
                        "means the model fits the training data better. The DPO part (loss/dpo) "
                        "starts at ln 2 = 0.693; with the NLL term switched on, the total "
                        "(loss/train) adds the NLL term's weight times the chart beside."),
    job_panel.ChartSpec("Surprise at the preferred answer", ("loss/nll",), "Average negative "
                        "log-probability per token of the preferred answers (lower means the model "
                        "finds them more likely). If it rises while the DPO loss falls, the model "
                        "is pushing the preferred answers down too: likelihood displacement."),
    job_panel.ChartSpec("Reward margin", ("rewards/margins",), "How much more the model "
                        "favours the preferred answer than the rejected one; higher is better."),
    job_panel.ChartSpec("Log-probabilities of the answers", ("logps/chosen", "logps/rejected"),
                        "Log-probability of the preferred (chosen) and rejected answers. If "
                        "both fall, the model is unlearning the answer it should prefer: this "
                        "is called likelihood displacement."),
    job_panel.ChartSpec("Accuracy", ("rewards/accuracies",), "Share of pairs in the batch "
                        "where the preferred answer scores higher (0 to 1; higher is better)."),
    job_panel.ChartSpec("Reward", ("reward/mean", "reward/std"), "Mean reward of the "
                        "answers the model wrote at each step (higher is better), and its "
                        "spread."),
    job_panel.ChartSpec("Distance from the start", ("kl/ref", "policy/entropy"), "KL: how far "
                        "the model's answers have moved from the starting model (nats). "
                        "Entropy: how varied its word choices are; falling means narrower."),
]


def choose_data(data_kind: str) -> tuple[dict, data.Dataset | None]:
    """Return the config fields that name the training data, and the validated dataset."""
    source = st.radio("Training data", ["Bundled", "Class preferences", "Upload a file",
                                        "Edit in a table"], horizontal=True, key="align_source")
    bundled = [b for b in data.list_bundled() if data_kind in ("any", b.kind)]
    load = {"sft": data.load_sft, "preference": data.load_preferences}.get(data_kind, load_any)
    if source == "Class preferences":
        session = st.selectbox("Class session", workshop.list_sessions(), key="align_session")
        if session is None:
            st.info("No class preferences yet: collect votes on the Class preferences page.")
            return {}, None
        rows = workshop.preference_rows(session)
        if data_kind == "sft":  # supervised fine-tuning on the answers the class preferred
            rows = [{"prompt": row["prompt"], "completion": row["chosen"]} for row in rows]
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

    name = st.selectbox("Dataset", [b.name for b in bundled], key="align_dataset")
    if name is None:
        return {}, None
    description = next(b.description for b in bundled if b.name == name)
    if description:
        st.caption(description)
    if source == "Edit in a table":
        records, _ = data.read_records(next(b.path for b in bundled if b.name == name))
        table = pd.DataFrame([{k: v if isinstance(v, str) else json.dumps(v)
                               for k, v in record.items()} for _, record in records])
        st.caption("Chat messages appear as JSON text; keep the brackets and quotes intact.")
        edited = st.data_editor(table, num_rows="dynamic", key=f"align_table_{name}")
        rows = [{k: _from_cell(v) for k, v in row.items() if isinstance(v, str)}
                for row in edited.to_dict("records")]
        return {"dataset": f"{name} (edited)", "rows": rows}, _validated(load, rows)
    return {"dataset": name}, _validated(data.load_bundled, name)


def _from_cell(text: str):
    """Turn a table cell back into chat messages when it contains their JSON, else keep the text."""
    if text.lstrip().startswith("[{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text  # validation then reports the field as invalid
    return text


def load_any(source, fmt=None, name="") -> data.Dataset:
    """Read preference rows, or SFT rows when the data has no chosen and rejected answers."""
    try:
        return data.load_preferences(source, fmt=fmt, name=name)
    except data.DataError:
        return data.load_sft(source, fmt=fmt, name=name)


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


def choose_preset(kind: str) -> presets.Preset | None:
    """Offer the named presets of the method; picking one moves the widgets to its values."""
    options = {p.name: p for p in presets.presets_for(kind)}
    if not options:
        return None
    name = st.selectbox("Preset", ["custom", *options], key=f"align_preset_{kind}",
                        on_change=_apply_preset, args=(kind,),
                        format_func=lambda n: "Custom settings" if n == "custom"
                        else f"{options[n].label} ({options[n].family})")
    preset = options.get(name)
    if preset is not None:
        st.caption(preset.why)
    return preset


def _apply_preset(kind: str) -> None:
    preset = presets.PRESETS.get(st.session_state[f"align_preset_{kind}"])
    if preset is None:
        return
    config = preset.config
    st.session_state.update({f"align_{key}": config[key] for key in DEFAULTS if key in config})
    st.session_state["align_nll"] = config.get("nll_weight", 0) > 0
    st.session_state["align_source"] = "Bundled"
    st.session_state["align_dataset"] = config.get("dataset")
    if config.get("model") in {spec.name for spec in models.list_models()}:
        st.session_state["align_model"] = config["model"]


def settings(method: str, preset: presets.Preset | None) -> dict:
    """Draw the sliders and return their config fields."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(f"align_{key}", value)
    left, middle, right = st.columns(3)
    config = {
        "steps": left.slider("Steps", 1, 300, key="align_steps",
                             help="Optimizer steps to train for."),
        "learning_rate": left.select_slider(
            "Learning rate", [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 5e-3],
            key="align_learning_rate", help="Size of each update; too high is unstable."),
        "batch_size": middle.select_slider("Batch size", [1, 2, 4, 6, 8, 12, 16, 32],
                                           key="align_batch_size",
                                           help="Examples (or pairs) per step."),
        "lora_rank": middle.select_slider(
            "What to train", [0, 4, 8, 16, 32], key="align_lora_rank",
            format_func=lambda r: "all weights" if r == 0 else f"LoRA adapter, rank {r}",
            help="LoRA trains a small add-on instead of all weights: faster, smaller runs."),
        "max_length": right.slider("Maximum length (tokens)", 32, 512, step=16,
                                   key="align_max_length"),
        "seed": int(right.number_input("Seed", 0, 1_000_000, key="align_seed")),
    }
    extras = {k: preset.config[k] for k in PRESET_EXTRAS if preset and k in preset.config}
    if extras.get("max_prompt_length", config["max_length"]) >= config["max_length"]:
        extras["max_prompt_length"] = config["max_length"] // 2
    config.update(extras)
    if method in ("DPO", "IPO"):
        config["beta"] = left.select_slider(
            "β (beta)", [0.01, 0.05, 0.1, 0.2, 0.5, 1.0], key="align_beta",
            help="How strongly the model is kept close to where it started.")
        nll = middle.checkbox("Add an NLL term", key="align_nll", help="Also raise the "
                              "preferred answer's own probability, which plain DPO can lower.")
        config["nll_weight"] = 1.0 if nll else 0.0
        with middle.popover("What the NLL term does"):
            st.markdown(explain.explain("nll"))
    if method == "RL":
        config.update(rl_settings(left, middle, right))
    return config


def rl_settings(left, middle, right) -> dict:
    from core.train.rl import REWARD_FUNCTIONS

    runs = [spec.name for spec in models.list_reward_models()]
    options = [f"function: {name}" for name in REWARD_FUNCTIONS] + runs
    source = right.selectbox("Reward", options, help="A built-in scoring rule, or a reward "
                             "model trained here with the Reward model method.")
    fields = {"reward": source.removeprefix("function: ")} if source.startswith("function: ") \
        else {"reward_model": source}
    fields["beta"] = left.select_slider("β (KL penalty)", [0.0, 0.01, 0.05, 0.1, 0.2, 0.5],
                                        value=0.05, help="How strongly the model is kept "
                                        "close to where it started.")
    fields["samples_per_prompt"] = middle.slider("Answers per prompt", 2, 8, 4, help="Each "
                                                 "answer is compared with the others' mean.")
    return fields


# result key of the value before training, key after, label, plain-words caption
SUMMARY_PAIRS = [
    ("accuracy/before", "accuracy/after", "Pairs ranked correctly",
     "Share of training pairs where the reward model scores the preferred answer higher."),
    ("reward/first", "reward/mean", "Mean reward",
     "Mean reward of the model's answers at the first and the last step."),
]


def before_after(info: jobs.JobInfo) -> None:
    for first, last, label, caption in SUMMARY_PAIRS:
        if first in info.result and last in info.result:
            start, end = info.result[first], info.result[last]
            st.metric(label, f"{end:.2f}", f"{end - start:+.2f} from {start:.2f}", help=caption)
    before, after = info.result.get("probs/before"), info.result.get("probs/after")
    if not before or not after:
        return
    names = {"chosen": "preferred answer" if "rejected" in before else "training answer",
             "rejected": "rejected answer"}
    rows = [{"prompt": prompt, "answer": names.get(answer, answer), "when": when,
             "probability": probs[prompt]}
            for when, table in (("before", before), ("after", after))
            for answer, probs in table.items() for prompt in probs]
    frame = pd.DataFrame(rows)
    st.subheader("Before and after, on the dataset's prompts")
    chosen = frame[frame["answer"] == names["chosen"]].groupby("when")["probability"].mean()
    if {"before", "after"} <= set(chosen.index) and chosen["after"] < chosen["before"]:
        st.warning(
            f"The preferred answers became *less* likely on average ({chosen['before']:.1%} "
            f"before, {chosen['after']:.1%} after), even if the charts above look like success. "
            "DPO only asks that preferred answers gain on rejected ones, so both can fall: this "
            "is likelihood displacement. Try again with the NLL term switched on.")
    table = frame.pivot_table("probability", "prompt", ["answer", "when"], sort=False)
    st.dataframe(table.style.format("{:.2%}"))
    chart = alt.Chart(frame, height=alt.Step(14)).mark_bar().encode(
        y=alt.Y("prompt:N", title=None, axis=alt.Axis(labelLimit=260)),
        yOffset=alt.YOffset("when:N", sort=["before", "after"]),
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("when:N", sort=["before", "after"], title=None),
        column=alt.Column("answer:N", title=None),
        tooltip=["prompt", "answer", "when", alt.Tooltip("probability:Q", format=".2%")],
    ).properties(width=260)
    st.altair_chart(chart)
    st.caption("Probability of each prompt's preferred (chosen) and rejected answer, under "
               "the starting model (before) and the new run (after).")
    ui.download_buttons(frame, f"{info.id}-before-after", chart=chart)


ui.setup_page("Align a model", "Pick a method, a starting model and training data, then "
              "press Start. Training runs in the background: the charts below update live, "
              "and the finished model appears on every page of the lab.")
owner = job_panel.owner_id()
jobs.ensure_standby()  # preload the trainers now, so Start begins training sooner
st.session_state.setdefault("align_method", "DPO")
method = st.radio("Method", list(METHODS), horizontal=True, key="align_method")
kind, data_kind, explain_key, fixed = METHODS[method]
st.info(explain.explain(explain_key))
preset = choose_preset(kind)
model = ui.model_select("Starting model", key="align_model")
data_fields, dataset = choose_data(data_kind)
config = {"model": model, **data_fields, **fixed, **settings(method, preset)}
busy = job_panel.active_job(owner, ("sft", "dpo", "reward", "rl"))
if busy:
    st.caption(f"Your job {busy} is still queued or running: cancel it or wait for it to "
               "finish before starting another.")
if st.button("Start", type="primary", disabled=model is None or dataset is None or bool(busy)):
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
