"""The study's record and its tables: it reads records and evaluations, and never trains.

:mod:`.record` (``docs/experiments/runs.json`` and the headline figures), :mod:`.experiments`
(``dcign-experiments``: collect DVC experiments, docs/experiments.md's tables), :mod:`.baselines`
(``dcign-baselines``: docs/baselines.md's methods table and sweeps), :mod:`.pca_reference` (PCA's
reconstruction PSNR, the study's linear reference).
"""
