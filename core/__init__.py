"""Alignment Lab core: models, data, training, analysis, jobs and storage, free of Streamlit."""
