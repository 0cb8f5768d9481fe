"""Fixtures for page tests: AppTest over tiny models chosen by configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

PAGES_DIR = Path(__file__).resolve().parents[2] / "pages"


@pytest.fixture
def app_page(tiny_lab):
    """Return a function that builds an AppTest for `pages/<name>.py` over the tiny models."""
    st.cache_data.clear()
    st.cache_resource.clear()

    def build(name: str) -> AppTest:
        return AppTest.from_file(str(PAGES_DIR / f"{name}.py"), default_timeout=180)

    yield build
    st.cache_data.clear()
    st.cache_resource.clear()
