"""Evaluation and review: scores, calibrations and plots of trained models, re-rendering, reports."""
