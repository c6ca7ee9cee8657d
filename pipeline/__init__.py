"""What is done with trained models, one subpackage per job.

- :mod:`pipeline.metrics`: the metrics, one pure function of codes and factors (or images) per file;
- :mod:`pipeline.evaluation`: the evaluate stage (``dcign-evaluate``): scores, calibrations, plots;
- :mod:`pipeline.inverse`: inverse graphics (``dcign-fit`` and the fit stage);
- :mod:`pipeline.explorer`: the interactive explorer (``dcign-explore``);
- :mod:`pipeline.study`: the study's record and its tables (``dcign-experiments``, ``dcign-baselines``);
- :mod:`pipeline.review`: a model's results at a glance (``dcign-rerender``, ``dcign-report``,
  ``dcign-summary``).

Shared by several: :mod:`pipeline.images` (image files in and out) and :mod:`pipeline.markers`
(the generated sections of committed documents). The metrics import nothing of the project;
the evaluation imports only them; the study reads records and never trains.
"""
