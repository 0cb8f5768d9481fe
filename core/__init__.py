"""Alignment Lab core: models, data, training, analysis, jobs and storage, free of Streamlit."""

import os

# NOTE: OpenMP threads spin while they wait for work by default. On a small shared CPU (two
# cores serving the app, a training job and several visitors) that spinning starves the other
# processes: a SmolLM2 forward pass measured 4.7 s with spinning and 0.38 s with passive
# waiting under the same load. The runtime reads this only when torch first loads it, so the
# lab sets it here, before any core module imports torch; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
