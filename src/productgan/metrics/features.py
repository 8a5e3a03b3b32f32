"""Moved to ``productgan.evaluator``; these names stay here only until report.py and
train/loop.py import them from there. Nothing in productgan.metrics imports this module."""

from productgan.evaluator.cache import INFO_FILE
from productgan.evaluator.inference import class_probabilities, features_and_probabilities

__all__ = ["INFO_FILE", "class_probabilities", "features_and_probabilities"]
