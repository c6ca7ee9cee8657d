"""Inverse graphics: recover the scene (pose, light, face) behind an image.

:mod:`.fit` (the amortised read-out and the CMA-ES analysis-by-synthesis), :mod:`.results` (what a
fit writes and reads back), :mod:`.cli` (``dcign-fit``), :mod:`.stage` (the DVC ``fit`` stage of
``fit/dvc.yaml``), :mod:`.table` (docs/results.md's fit table from ``eval/fit.json``).
"""
