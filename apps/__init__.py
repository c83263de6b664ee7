"""Gradio apps and the maskworks command line."""
