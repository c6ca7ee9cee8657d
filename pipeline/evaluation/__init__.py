"""The evaluate stage (``dcign-evaluate``): score trained models on held-out renders.

:mod:`.evaluate` (the stage: load, encode, score, write), :mod:`.scoring` (the protocols: from
codes, images and factors to scores through :mod:`pipeline.metrics`), :mod:`.calibration`
(latent <-> angle tables, which the other jobs read), :mod:`.encode` (a model over uint8 images),
:mod:`.plots`.
"""
