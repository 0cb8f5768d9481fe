"""Home: what the lab is for, the alignment pipeline, and the models available."""

import pandas as pd
import streamlit as st

from core import device as device_lib
from core import models
from dashboard import ui

ui.setup_page(
    "Alignment Lab",
    "A hands-on lab for seeing what *alignment* does to a language model. You can train a "
    "small GPT from scratch, fine-tune it, align it to preferences, and then measure what "
    "changed: which answers became more likely, how the framing of a question moves them, "
    "and whether the model's outputs and inner representations became narrower. Every "
    "number in the lab is computed live from the models you pick; nothing is pre-recorded.",
)

st.subheader("The pipeline")
st.markdown(
    "A chat assistant is made in stages. Each stage starts from the model the previous one "
    "produced. The lab lets you run every stage yourself, on a small scale."
)
st.graphviz_chart(
    """
    digraph pipeline {
      rankdir=LR; node [shape=box, style="rounded,filled", fillcolor="#e7f5ff", fontname=sans];
      corpus [label="Text from the web\\n(the corpus)", fillcolor="#fff3bf"];
      base [label="Pretraining\\nbase model"];
      sft [label="Supervised fine-tuning\\n(SFT)"];
      prefs [label="Human preferences\\n(A is better than B)", fillcolor="#fff3bf"];
      rm [label="Reward model"];
      rl [label="RL (policy gradient)"];
      dpo [label="DPO\\n(direct preference optimisation)"];
      aligned [label="Aligned model", fillcolor="#d3f9d8"];
      corpus -> base -> sft; sft -> rl; prefs -> rm -> rl -> aligned;
      prefs -> dpo; sft -> dpo -> aligned;
    }
    """
)
st.caption(
    "Yellow boxes are data made by people; blue boxes are training steps. RL first trains a "
    "reward model on the preferences and then optimises against it; DPO learns from the "
    "preferences directly."
)

st.subheader("Where to start")
st.markdown(
    "- **Compare models**: the same prompt to the base, SFT and aligned models, side by side.\n"
    "- **Next-token probabilities**: does the model say *four* or *five* after "
    "\"Two plus two equals\", and how does the framing of the question change that?\n"
    "- **Collapse and diversity**: does alignment make the model narrower?\n"
    "- **Bias**: how the model talks about people described by religion, gender or disability.\n"
    "- **Pretrain** and **Align**: train your own models from sliders and watch them learn."
)

st.subheader("Models available")
try:
    device_name = device_lib.describe(device_lib.pick_device())
except ValueError as err:
    device_name = f"unavailable ({err})"
rows = []
for spec in ui.model_options():
    n_params = models.count_parameters(spec)
    rows.append({
        "model": spec.name,
        "stage": spec.stage,
        "family": spec.family,
        "parameters": f"{n_params / 1e6:.2f} M" if n_params else "counted after first load",
        "weights": "LoRA adapter" if spec.weights == "lora" else "full",
        "started from": spec.parent or "",
        "where it came from": spec.source,
    })
table = pd.DataFrame(rows)
if table.empty:
    st.info("No models found. Install the lab with the command in the README.")
else:
    st.dataframe(table, hide_index=True, width="stretch")
    st.caption(
        f"All models run on {device_name}. A LoRA adapter is a small set of extra weights "
        "trained on top of the model it started from; its parameter count is the adapter's own."
    )
