"""UI helpers shared by every page: the sidebar, model pickers, cached models and downloads.

Caching lives here, in the UI layer: `core/` stays free of Streamlit. A model loaded through
`get_model` is shared by every visitor of the server, so pages only read it.
"""

from __future__ import annotations

import io
import re
import uuid
import logging

import pandas as pd
import streamlit as st

from core import device as device_lib
from core import models

log = logging.getLogger(__name__)

SELECTED_KEY = "selected_models"  # the model choice shared by all pages
URL_PARAM = "models"


def setup_page(title: str, intro: str) -> None:
    """Write the page title and its plain-words introduction, and draw the sidebar."""
    st.title(title)
    st.markdown(intro)
    _sidebar()


@st.cache_resource(show_spinner=False)
def _device_label() -> str:
    return device_lib.describe(device_lib.pick_device())


def _sidebar() -> None:
    with st.sidebar:
        try:
            st.caption(f"Running on **{_device_label()}**")
        except ValueError as err:
            st.error(str(err))
        chosen = _shared_selection()
        if chosen:
            st.caption("Models in use: " + ", ".join(f"`{name}`" for name in chosen))


def model_options() -> list[models.ModelSpec]:
    """Return every model the lab can offer right now (shipped, built in, and runs)."""
    return models.list_models()


def _shared_selection() -> list[str]:
    if SELECTED_KEY not in st.session_state:
        from_url = [n for n in st.query_params.get(URL_PARAM, "").split(",") if n]
        st.session_state[SELECTED_KEY] = from_url or models.default_model_names()
    return st.session_state[SELECTED_KEY]


def _describe(name: str, specs: dict[str, models.ModelSpec]) -> str:
    spec = specs.get(name)
    if spec is None:
        return name
    return f"{name} ({spec.stage})"


def model_multiselect(label: str = "Models", key: str = "models", max_models: int = 4) -> list[str]:
    """Let the user pick up to `max_models` models; the choice is shared by pages and the URL."""
    specs = {spec.name: spec for spec in model_options()}
    shared = _shared_selection()
    options = list(specs) + [n for n in shared if n not in specs]
    widget_key = f"_{key}_widget"
    if widget_key not in st.session_state:
        st.session_state[widget_key] = shared[:max_models]
    chosen = st.multiselect(
        label, options, key=widget_key, max_selections=max_models,
        format_func=lambda n: _describe(n, specs),
        help="Pick the models to compare. Runs you train appear here when they finish.",
    )
    with st.expander("Add a model by Hugging Face id or folder path"):
        custom = st.text_input("Model id or folder", key=f"_{key}_custom",
                               placeholder="HuggingFaceTB/SmolLM2-135M-Instruct or /path/to/model")
        if st.button("Add", key=f"_{key}_add") and custom.strip():
            try:
                models.resolve(custom.strip())
            except models.ModelError as err:
                st.error(str(err))
            else:
                st.session_state[widget_key] = (chosen + [custom.strip()])[-max_models:]
                st.rerun()
    st.session_state[SELECTED_KEY] = chosen
    # The default choice stays out of a clean URL: Streamlit adds a history entry for each
    # new query string, so writing it on every page switch made Back take two presses.
    if URL_PARAM in st.query_params or chosen != models.default_model_names():
        _set_query_param(URL_PARAM, ",".join(chosen))
    return chosen


def model_select(label: str = "Model", key: str = "model", names: list[str] | None = None) -> str | None:
    """Let the user pick one model; defaults to the first model of the shared choice."""
    specs = {spec.name: spec for spec in model_options()}
    options = names if names is not None else list(specs)
    if not options:
        st.info("No models are available yet.")
        return None
    shared = _shared_selection()
    default = next((n for n in shared if n in options), options[0])
    return st.selectbox(label, options, index=options.index(default), key=key,
                        format_func=lambda n: _describe(n, specs))


@st.cache_resource(show_spinner=False, max_entries=12)
def cached_model(name: str) -> models.LoadedModel:
    """Load a model once per server; raises ModelError. Pages call `get_model` instead."""
    return models.load_model(name)


def get_model(name: str) -> models.LoadedModel | None:
    """Return the shared, cached model for `name`, or show the error and return None."""
    try:
        with st.spinner(f"Loading {name} (the first load of SmolLM2 converts it, about 20 s)..."):
            return cached_model(name)
    except (models.ModelError, ValueError) as err:
        log.warning("Loading model %s failed: %s", name, err)
        st.error(str(err))
        return None


def get_models(names: list[str]) -> dict[str, models.LoadedModel]:
    """Load several models, skipping (and reporting) those that fail."""
    loaded = {}
    for name in names:
        lm = get_model(name)
        if lm is not None:
            loaded[name] = lm
    return loaded


def chart_png(chart) -> bytes | None:
    """Render an Altair chart to PNG bytes, or None when vl-convert is unavailable."""
    try:
        import vl_convert as vlc
    except ImportError:
        return None
    try:
        return vlc.vegalite_to_png(chart.to_json(), scale=2)
    except Exception as err:  # a chart vl-convert cannot draw should not break the page
        log.warning("PNG export failed: %s", err)
        return None


def download_buttons(df: pd.DataFrame, stem: str, chart=None, key: str | None = None) -> None:
    """Offer the table behind a chart as CSV and, when a chart is given, the chart as PNG."""
    key = key or stem
    cols = st.columns(2 if chart is not None else 1)
    cols[0].download_button("Download CSV", df.to_csv(index=False).encode("utf-8"),
                            file_name=f"{stem}.csv", mime="text/csv", key=f"_csv_{key}")
    if chart is not None:
        if cols[1].button("Prepare PNG", key=f"_png_prepare_{key}"):
            png = chart_png(chart)
            if png is None:
                cols[1].caption("PNG export needs the vl-convert-python package.")
            else:
                cols[1].download_button("Download PNG", io.BytesIO(png), file_name=f"{stem}.png",
                                        mime="image/png", key=f"_png_{key}")


def require_models(names: list[str], minimum: int = 1) -> None:
    """Stop the page with a hint when fewer than `minimum` models are chosen."""
    if len(names) < minimum:
        st.info(f"Pick at least {minimum} model{'s' if minimum > 1 else ''} above to start.")
        st.stop()


OWNER_KEY = "owner_id"


def session_owner() -> str:
    """Return this browser's owner id, which tags the jobs it starts.

    The id lives in the session and in the URL (`?owner=`), so a page reload keeps the user's
    own jobs in view. It separates people; it is not a login: whoever has the URL sees the
    same jobs.
    """
    if OWNER_KEY not in st.session_state:
        from_url = st.query_params.get("owner", "")
        valid = re.fullmatch(r"[\w-]{1,64}", from_url) is not None
        st.session_state[OWNER_KEY] = from_url if valid else uuid.uuid4().hex[:12]
    _set_query_param("owner", st.session_state[OWNER_KEY])
    return st.session_state[OWNER_KEY]


def _set_query_param(key: str, value: str) -> None:
    # Write only changes, so an unchanged value never adds a browser-history entry.
    if st.query_params.get(key) != value:
        st.query_params[key] = value
