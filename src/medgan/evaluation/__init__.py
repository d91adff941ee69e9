"""Evaluation: feature extractors (domain CNN, Inception) and metrics beside real-vs-real floors."""
