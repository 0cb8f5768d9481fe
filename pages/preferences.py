"""Class preferences: students vote on pairs of model answers; the votes become DPO data."""

from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from core import workshop
from dashboard import job_panel, ui

VOTE_LABELS = {"votes_a": "answer A", "votes_b": "answer B", "skips": "skipped"}
DEFAULT_PROMPTS = "What is two plus two?\nGive me advice about exams.\nIs my poem good?"


def vote(session: str, voter: str) -> None:
    pairs = workshop.read_pairs(session)
    if not pairs:
        st.info("This session has no answer pairs yet. The lecturer prepares them below.")
        return
    pair = workshop.next_pair(session, voter)
    if pair is None:
        st.success(f"You have judged all {len(pairs)} pairs of this session. Thank you!")
        return
    st.caption(f"Pair {pairs.index(pair) + 1} of {len(pairs)}")
    st.markdown(f"**Prompt:** {pair['prompt']}")
    sides = ("b", "a") if workshop.shows_b_first(pair["id"], voter) else ("a", "b")
    columns = st.columns(2)
    for column, side, label in zip(columns, sides, ("Left", "Right")):
        box = column.container(border=True)
        box.markdown(f"**{label} answer**")
        box.text(pair[side])
        if column.button(f"{label} is better", key=f"vote-{side}", width="stretch"):
            workshop.record_vote(session, pair, voter, side)
            st.rerun()
    if st.button("Skip: I cannot choose", key="vote-skip"):
        workshop.record_vote(session, pair, voter, "skip")
        st.rerun()


def prepare(session: str) -> None:
    st.markdown("**Prepare answer pairs.** A model writes two different answers to each prompt "
                "by sampling. Students then judge each pair.")
    added = st.session_state.pop("pref_added", None)
    if added:
        st.success(added)
    model = ui.model_select("Model that writes the answers", key="pref_model")
    prompts = st.text_area("Prompts, one per line", DEFAULT_PROMPTS, key="pref_prompts")
    left, middle, right = st.columns(3)
    temperature = left.slider("Temperature", 0.3, 1.5, 1.0, 0.1,
                              help="Higher values make the two answers differ more.")
    max_new_tokens = middle.slider("Answer length (tokens)", 5, 80, 30)
    seed = int(right.number_input("Seed", 0, 1_000_000, 0, key="pref_seed"))
    if st.button("Generate pairs", disabled=model is None):
        lm = ui.get_model(model)
        if lm is not None:
            with st.spinner("Writing answers..."):
                new = workshop.make_pairs(lm, prompts.splitlines(), seed=seed,
                                          temperature=temperature, max_new_tokens=max_new_tokens)
            total = workshop.add_pairs(session, new)
            # Rerun so the Vote tab, drawn above this one, shows the new pairs at once.
            st.session_state["pref_added"] = (f"Added {len(new)} pairs; the session now has "
                                              f"{len(total)}.")
            st.rerun()


def results(session: str) -> None:
    summary = workshop.summarize(session)
    cols = st.columns(4)
    cols[0].metric("Pairs", summary.n_pairs)
    cols[1].metric("Votes", summary.n_votes)
    cols[2].metric("Students", summary.n_voters)
    agreement = "–" if summary.agreement is None else f"{summary.agreement:.0%}"
    cols[3].metric("Agreement", agreement, help="Share of votes that went to the answer most "
                   "students preferred, over pairs with two or more votes (50% to 100%).")
    if summary.n_votes + summary.n_skips == 0:
        return
    frame = pd.DataFrame(summary.per_pair)
    long = frame.rename(columns=VOTE_LABELS).melt(
        ["pair", "prompt"], list(VOTE_LABELS.values()), var_name="vote", value_name="count")
    chart = alt.Chart(long).mark_bar().encode(
        y=alt.Y("prompt:N", title=None, axis=alt.Axis(labelLimit=400)),
        x=alt.X("count:Q", title="votes"), color=alt.Color("vote:N", title=None),
        tooltip=["prompt", "vote", "count"])
    st.altair_chart(chart, width="stretch")
    st.caption("Votes for answer A, answer B and skips on each prompt. A long bar of one colour "
               "means the class agreed.")
    ui.download_buttons(frame, f"{session}-votes-per-pair", chart=chart)
    path = workshop.votes_path(session)
    if path.is_file():
        st.download_button("Download every vote (JSONL)", path.read_bytes(),
                           file_name=path.name, mime="application/jsonl")
    rows = workshop.preference_rows(session)
    st.markdown(f"Pairs with a clear majority, which become preference data: **{len(rows)}**.")
    if st.button("Train DPO on these votes", disabled=not rows):
        open_align(session)


def open_align(session: str) -> None:
    """Preselect this session as DPO data on the Align page and go there."""
    st.session_state.update(align_method="DPO", align_source="Class preferences",
                            align_session=session)
    page = Path(__file__).resolve().parent / "align.py"
    try:
        st.switch_page(st.Page(str(page), url_path="align"))
    except st.errors.StreamlitAPIException:
        st.info("Open the Align page: DPO with this session's votes is selected there.")


ui.setup_page("Class preferences", "A workshop in how human preferences become training "
              "data. Each student sees a prompt and two answers written by a model, and picks "
              "the better one. The class's votes are collected in one shared dataset, which "
              "the lecturer can download or use to align a model with DPO.")
voter = job_panel.owner_id()
existing = workshop.list_sessions()
name = st.text_input("Session name", existing[-1] if existing else "seminar-1",
                     key="pref_session", help="Everyone in the class uses the same name.")
try:
    session = workshop.validate_session_name(name)
except workshop.WorkshopError as err:
    st.error(str(err))
    st.stop()

vote_tab, lecturer_tab = st.tabs(["Vote", "Lecturer"])
with vote_tab:
    vote(session, voter)
with lecturer_tab:
    prepare(session)
    st.divider()
    results(session)
