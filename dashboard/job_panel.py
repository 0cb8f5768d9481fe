"""Streamlit view of one background job: status, queue place, Cancel, live charts, samples.

Pages that start jobs through `core.jobs` (Align, Pretrain) call `show_job`. While the job is
queued or running, the view is a fragment that rereads the job's files every POLL_S seconds,
so only this part of the page redraws. When the job ends, the whole page reruns once, so the
page can show the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import altair as alt
import pandas as pd
import streamlit as st

from core import jobs
from dashboard import ui

POLL_S = 1.0
STATE_WORDS = {
    "queued": "Waiting in the queue",
    "running": "Training",
    "done": "Finished",
    "failed": "Failed",
    "cancelled": "Cancelled",
}


@dataclass(frozen=True)
class ChartSpec:
    """One live chart: the metric keys drawn on it, and a plain-words caption."""

    title: str
    keys: tuple[str, ...]
    caption: str


def owner_id() -> str:
    """Return this browser's owner id (see `dashboard.ui.session_owner`)."""
    return ui.session_owner()


def events_frame(job_id: str) -> pd.DataFrame:
    """Return the job's numeric metric events as a table, one row per event."""
    events, _ = jobs.read_events(job_id)
    if not events:
        return pd.DataFrame(columns=["step"])
    frame = pd.DataFrame(events)
    numeric = [c for c in frame.columns if c != "time" and pd.api.types.is_numeric_dtype(frame[c])]
    return frame[numeric]


def draw_charts(frame: pd.DataFrame, charts: list[ChartSpec], stem: str) -> None:
    """Draw a line chart per ChartSpec whose metrics appear in `frame`, two per row."""
    shown = [spec for spec in charts if any(key in frame.columns for key in spec.keys)]
    if "step" not in frame.columns or not shown:
        return
    for start in range(0, len(shown), 2):
        for column, spec in zip(st.columns(2), shown[start:start + 2]):
            with column:
                _chart(frame, spec, stem)


def _chart(frame: pd.DataFrame, spec: ChartSpec, stem: str) -> None:
    keys = [key for key in spec.keys if key in frame.columns]
    long = frame[["step", *keys]].melt("step", var_name="metric").dropna()
    chart = alt.Chart(long, title=spec.title).mark_line(point=len(long) < 40).encode(
        x=alt.X("step:Q", title="step"),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("metric:N", title=None),
        tooltip=["step", "metric", "value"],
    )
    st.altair_chart(chart, width="stretch")
    st.caption(spec.caption)
    slug = spec.title.lower().replace(" ", "-")
    ui.download_buttons(frame[["step", *keys]], f"{stem}-{slug}", chart=chart)


def _samples(job_id: str) -> None:
    samples, _ = jobs.read_samples(job_id)
    if not samples:
        return
    latest = samples[-1]
    st.markdown(f"**Sample answers at step {latest['step']}**")
    for text in latest["texts"]:
        st.text(text)
    if len(samples) > 1:
        with st.expander(f"All samples ({len(samples)} steps)"):
            st.dataframe(pd.DataFrame([{"step": s["step"], "text": t}
                                       for s in samples for t in s["texts"]]))


def _progress(job_id: str) -> None:
    events, _ = jobs.read_events(job_id)
    total = jobs.read_config(job_id).get("steps")
    # Training steps report a loss; other events (such as the data summary) do not count.
    steps = [event["step"] for event in events if any(k.startswith("loss/") for k in event)]
    if isinstance(total, int) and total > 0 and steps:
        done = min(max(steps) + 1, total)
        st.progress(done / total, text=f"Step {done} of {total}")
    else:
        st.caption("Loading the model and the data...")


def _status(info: jobs.JobInfo, owner: str) -> None:
    words = STATE_WORDS.get(info.state, info.state)
    if info.state == "queued":
        st.info(f"{words}: place {info.place}. It starts when the jobs before it on "
                f"{info.device} have finished.")
    elif info.state == "running":
        st.info(f"{words} on {info.device}. Charts update every {POLL_S:g} s.")
        _progress(info.id)
    elif info.state == "done":
        st.success(f"{words}: the new model is saved as **{info.run_id}** and can be picked "
                   "on every page.")
    elif info.state == "failed":
        st.error(f"{words}: {info.error}")
        with st.expander("Job log"):
            st.code(jobs.read_log(info.id) or "(empty)")
    else:
        st.warning(f"{words}. Nothing was saved.")
    if not info.finished and st.button("Cancel", key=f"cancel-{info.id}"):
        jobs.cancel(info.id, owner)
        st.rerun()


def _data_issues(job_id: str) -> None:
    """List the rows the trainer dropped or cut (too long, empty after cutting, ...)."""
    events, _ = jobs.read_events(job_id)
    for event in events:
        issues = event.get("data/issues")
        if issues:
            count = event.get("data/issue_count", len(issues))
            with st.expander(f"{count} training rows were dropped or changed"):
                st.dataframe(pd.DataFrame({"problem": issues}), hide_index=True)
            return


def _body(job_id: str, owner: str, charts: list[ChartSpec]) -> jobs.JobInfo:
    info = jobs.get_job(job_id)
    _status(info, owner)
    _data_issues(job_id)
    draw_charts(events_frame(job_id), charts, stem=job_id)
    _samples(job_id)
    return info


@st.fragment(run_every=POLL_S)
def _live(job_id: str, owner: str, charts: list[ChartSpec]) -> None:
    jobs.refresh()
    info = _body(job_id, owner, charts)
    if info.finished:
        st.rerun()  # redraw the whole page once, without polling, now that the job ended


def show_job(job_id: str, owner: str, charts: list[ChartSpec],
             on_done: Callable[[jobs.JobInfo], None] | None = None) -> None:
    """Show job `job_id`: live while it is active, then its final charts and `on_done(info)`."""
    jobs.refresh()
    info = jobs.get_job(job_id)
    if not info.finished:
        _live(job_id, owner, charts)
        return
    _body(job_id, owner, charts)
    if info.state == "done" and on_done is not None:
        on_done(info)


def active_job(owner: str, kinds: tuple[str, ...]) -> str | None:
    """Return the id of the owner's queued or running job of `kinds`, or None."""
    for info in jobs.list_jobs(owner=owner):
        if info.kind in kinds and not info.finished:
            return info.id
    return None


def pick_job(owner: str, kinds: tuple[str, ...], key: str) -> str | None:
    """Offer the user's own jobs of `kinds`, newest first; return the chosen job id.

    A page selects a job it has just submitted by setting `st.session_state[key]` to its id
    before calling this.
    """
    own = [info for info in jobs.list_jobs(owner=owner) if info.kind in kinds]
    if not own:
        return None
    # NOTE: no state in the label, because the live panel below refreshes on its own while
    # this box keeps the label of the last full page run.
    return st.selectbox("Your training jobs", [info.id for info in own], key=key,
                        help="The job's state and charts are shown below and update live.")
