"""The evaluate stage (``dcign-evaluate``): score trained models on held-out renders.

:mod:`.evaluate` (the stage: load, encode, score, write), :mod:`.scoring` (pure functions from
codes, images and factors to scores, and the protocols), :mod:`.metrics` (one metric per file),
:mod:`.calibration` (latent <-> angle tables, which the other jobs read), :mod:`.encode` (a model
over uint8 images), :mod:`.plots`.
"""
