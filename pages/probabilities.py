"""Next-token probabilities: what each model expects after a prompt, and how framing shifts it."""

from dataclasses import asdict

import altair as alt
import pandas as pd
import streamlit as st

from core import framings as fr
from core import inference
from dashboard import ui

PROMPTS = {
    "Two plus two equals": False,
    "In Orwell's novel, two plus two equals": False,
    "What is two plus two?": True,
    "A Muslim woman is": False,
}
DEFAULT_CANDIDATES = [" four", " five", " Four", " 4", " fish"]

ui.setup_page(
    "Next-token probabilities",
    "A language model writes one token at a time, and before each one it assigns a probability "
    "to every token it knows. This page shows those probabilities. After \"Two plus two "
    "equals\", the right answer *four* competes with *five*, the famous wrong answer from "
    "Orwell's *Nineteen Eighty-Four*, Radiohead and countless memes, because text on the "
    "internet repeats it. Compare models, and see how the framing of a question moves the odds.",
)

names = ui.model_multiselect("Models", max_models=4)
ui.require_models(names)
lms = ui.get_models(names)
if not lms:
    st.stop()

c1, c2, c3 = st.columns([3, 1, 1])
preset = c1.selectbox("Prompt", list(PROMPTS) + ["(write your own)"], key="probs_preset")
prompt = c1.text_input("Your prompt", key="probs_custom") if preset == "(write your own)" else preset
chat = c2.checkbox("Chat template", value=PROMPTS.get(preset, False), key=f"probs_chat_{preset}")
top_k = c3.slider("Top tokens", 3, 30, 10)
if not prompt:
    st.info("Type a prompt to start.")
    st.stop()

cand_df = st.data_editor(pd.DataFrame({"candidate answer": DEFAULT_CANDIDATES}),
                         num_rows="dynamic", key="probs_candidates", width="content")
candidates = [c for c in cand_df["candidate answer"].dropna().tolist() if c]


@st.cache_data(show_spinner=False, max_entries=512)
def distributions(names: tuple, prompt: str, top_k: int, candidates: tuple, chat: bool
                  ) -> list[dict]:
    results = inference.next_token_distributions(
        [ui.cached_model(name) for name in names], prompt, top_k=top_k,
        candidates=list(candidates), chat=chat)
    return [asdict(result) for result in results]


try:
    results = {name: inference.NextTokenResult(**result) for name, result in zip(
        lms, distributions(tuple(lms), prompt, top_k, tuple(candidates), chat))}
except ValueError as err:
    st.error(str(err))
    st.stop()
for r in results.values():
    r.top = [inference.TokenProb(**t) for t in r.top]
    r.candidates = [inference.CandidateScore(**c) for c in r.candidates]

st.subheader("The likeliest next tokens")
top = fr.top_tokens_table(results)
bars = alt.Chart(top).mark_bar().encode(
    x=alt.X("probability:Q", title="probability"),
    y=alt.Y("token:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False)),
    tooltip=["model", "token", alt.Tooltip("probability:Q", format=".4f")],
).properties(width=220, height=22 * top_k).facet(
    column=alt.Column("model:N", title=None, sort=list(lms)))
bars = bars.resolve_scale(y="independent")
st.altair_chart(bars)
st.dataframe(fr.entropy_table(results), hide_index=True)
st.caption(
    "Each bar is the probability the model gives to that token coming next; ␣ marks a space, "
    "so '␣four' and 'four' are different tokens. Entropy measures "
    "how spread out the whole distribution is: 0 bits means the model is certain, and the "
    "effective number of choices is how many equally likely tokens would give the same spread."
)
ui.download_buttons(top, "next-token-top", chart=bars, key="probs_top")

st.subheader("Candidate answers")
table = fr.candidate_table(results) if candidates else pd.DataFrame()
if not table.empty:
    st.dataframe(table, hide_index=True)
    st.caption(
        "The exact probability of each candidate answer, also when it spans several tokens "
        "(the token column shows how the model splits it). The log-ratio compares each model "
        "with the first: +0.69 means twice as likely, −0.69 half as likely."
    )
    ui.download_buttons(table, "candidates", key="probs_candidates_dl")

st.subheader("How the framing shifts the answer")
framing_text = st.text_area(
    "Framings, one per line ('chat:' uses the chat template; text after '=>' starts the reply)",
    value=fr.DEFAULT_FRAMINGS, height=160, key="probs_framings")


@st.cache_data(show_spinner=False, max_entries=256)
def framing_table(names: tuple, framing_text: str) -> pd.DataFrame:
    lms = {name: ui.cached_model(name) for name in names}
    return fr.framing_grid(lms, fr.parse_framings(framing_text))


try:
    grid = framing_table(tuple(lms), framing_text)
except ValueError as err:
    st.error(str(err))
else:
    heat = alt.Chart(grid).encode(
        x=alt.X("model:N", title=None, sort=list(lms), axis=alt.Axis(
            labelAngle=-30, labelLimit=180, labelOverlap=False)),
        y=alt.Y("framing:N", title=None, sort=None, axis=alt.Axis(labelLimit=360)))
    heat = (heat.mark_rect().encode(color=alt.Color("probability:Q", scale=alt.Scale(
        scheme="blues"))) + heat.mark_text().encode(text=alt.Text("probability:Q", format=".3f"))
    ).properties(width=80 * len(lms)).facet(
        column=alt.Column("answer:N", title="P(answer)", sort=list(fr.ANSWER_FORMS)))
    st.altair_chart(heat)
    st.caption(
        "Each cell is the probability that the next words are *four* (left) or *five* (right), "
        "adding up the spellings ' four', ' Four' and ' 4'. Darker means more likely."
    )
    ui.download_buttons(grid, "framings", chart=heat, key="probs_framings_dl")

st.subheader("Logit lens: where in the model the answer appears")
l1, l2 = st.columns(2)
lens_model = l1.selectbox("Model", list(lms), key="lens_model")
lens_target = l2.selectbox("Candidate", candidates or [" four"], key="lens_target")
try:
    lens = inference.logit_lens(lms[lens_model], prompt, lens_target, chat=chat)
except ValueError as err:
    st.error(str(err))
    st.stop()
cells = pd.DataFrame([
    {"layer": layer, "position": f"{pos}: {tok!r}", "probability": p, "top token": top_tok}
    for layer, (row, tops) in enumerate(zip(lens.probs, lens.top_tokens))
    for pos, (tok, p, top_tok) in enumerate(zip(lens.tokens, row, tops))
])
lens_chart = alt.Chart(cells).encode(
    x=alt.X("position:N", sort=None, title="input token"),
    y=alt.Y("layer:O", sort="descending", title="layer (0 = embeddings)"),
    tooltip=["layer", "position", "top token", alt.Tooltip("probability:Q", format=".4f")])
lens_chart = lens_chart.mark_rect().encode(
    color=alt.Color("probability:Q", scale=alt.Scale(scheme="oranges"),
                    title=f"P({lens.target!r})"))
st.altair_chart(lens_chart, width="stretch")
st.caption(
    f"The raw logit lens: each cell reads the model's hidden state at one layer and position "
    f"through the final output layer, giving P({lens.target!r}) as if the model stopped there. "
    "Early layers were never trained to be read this way, so treat them as rough; the top "
    "row is the model's real prediction. Hover a cell to see its likeliest token."
)
ui.download_buttons(cells, "logit-lens", chart=lens_chart, key="probs_lens")
