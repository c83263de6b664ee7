"""Entries of `maskworks eval/predict/masks` for the core models."""
