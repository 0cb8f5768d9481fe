"""Streamlit app entry and the UI helpers that every page shares."""
