"""Alignment Lab: the Streamlit entry point. Run with `streamlit run dashboard/app.py`.

This file registers every page in one place; the pages live in `pages/`, one file each.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so pages can import core and dashboard

import core  # noqa: E402,F401  (first: sets the OpenMP wait policy before torch loads)
import streamlit as st  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

# (section, file, title, icon); a page whose file is missing is left out of the menu
PAGES = [
    ("Explore", "home.py", "Home", ":material/home:"),
    ("Explore", "compare.py", "Compare models", ":material/compare:"),
    ("Explore", "probabilities.py", "Next-token probabilities", ":material/bar_chart:"),
    ("Explore", "collapse.py", "Collapse and diversity", ":material/scatter_plot:"),
    ("Explore", "bias.py", "Bias", ":material/balance:"),
    ("Train", "pretrain.py", "Pretrain a tiny GPT", ":material/school:"),
    ("Train", "align.py", "Align a model", ":material/tune:"),
    ("Workshop", "preferences.py", "Class preferences", ":material/how_to_vote:"),
]


def build_navigation() -> dict[str, list]:
    sections: dict[str, list] = {}
    for section, filename, title, icon in PAGES:
        path = ROOT / "pages" / filename
        if not path.is_file():
            continue
        page = st.Page(str(path), title=title, icon=icon, default=filename == "home.py",
                       url_path=filename.removesuffix(".py"))
        sections.setdefault(section, []).append(page)
    return sections


# An emoji icon needs no network. A material icon here made every browser fetch the favicon
# from fonts.gstatic.com, which fails offline and reveals each visit to a third party.
st.set_page_config(page_title="Alignment Lab", page_icon="🔬", layout="wide")
st.navigation(build_navigation()).run()
