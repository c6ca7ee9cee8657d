"""The study's record (``docs/experiments/runs.json``): how it reads back, and the figures its reports show.

``dcign-experiments collect`` writes the record: experiment name -> {``params`` (flat), ``metrics``
(the evaluation's ``eval/metrics.json``), ``train``, ``rev``, ``timestamp``}. Everything that
reports on it reads it here: :func:`load_runs` (a run recorded before a param existed gets the
param's default, :data:`ADDED_PARAMS`), :func:`seed_groups` (runs that differ only in their seed),
the headline figures (:data:`HEADLINE`) and the results rows of docs/results.md (:data:`RESULTS_ROWS`). It reads
records and never trains: ``dcign-experiments``, ``dcign-baselines``, ``dcign-report`` and
``dcign-summary`` use it.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

RUNS = Path("docs/experiments/runs.json")

# (column, model, path in eval/metrics.json); the table's and the plot's headline metrics.
HEADLINE = (
    ("recon PSNR", "dcign", "reconstruction.psnr"),
    ("corr az", "dcign", "factors.azimuth.abs_pearson"),
    ("corr el", "dcign", "factors.elevation.abs_pearson"),
    ("corr light", "dcign", "factors.light.abs_pearson"),
    ("MIG", "dcign", "disentanglement.mig_continuous"),
    ("active intr.", "dcign", "latents.n_active.intrinsic"),
    ("recog. intr.", "dcign", "recognition.intrinsic.identification.top1"),
    ("recog. 60-90", "dcign", "recognition.intrinsic.identification.delta_060_090.top1"),
    ("AUC intr.", "dcign", "recognition.intrinsic.verification.auc"),
    ("edit az margin", "dcign", "rerender.azimuth.psnr_margin"),
    ("identity az", "dcign", "rerender.azimuth.edit.identity"),
    ("id. decode(µ) az", "dcign", "rerender.azimuth.truth_code.identity"),
    ("base PSNR", "baseline", "reconstruction.psnr"),
    ("base MIG", "baseline", "disentanglement.mig_continuous"),
    ("base recog.", "baseline", "recognition.whole.identification.top1"),
    ("pixels recog.", "pixels", "recognition.whole.identification.top1"),
)
IGNORED_PARAMS = ("train.threads", "train.device", "train.checkpoint_every", "train.log_every")
OTHER_PIPELINES = ("baselines.", "fit.")  # params of fit/dvc.yaml and baselines/dvc.yaml: not this study's
# Params added after the study began, each with its default: a run recorded without one trained as if
# with it (the schedule's defaults are the code's behaviour before them; the baselines' parameters
# act only on methods that the study's two models, dcign and vae, are not).
ADDED_PARAMS = {
    "train.lr_schedule": "constant",
    "train.warmup_steps": 0,
    "train.beta": 4.0,
    "train.tcvae_alpha": 1.0,
    "train.tcvae_beta": 6.0,
    "train.tcvae_gamma": 1.0,
    "train.factor_gamma": 10.0,
    "train.factor_lr": 0.0001,
    "train.factor_hidden": 1000,
    "train.factor_layers": 6,
    "train.clamp_grad": "replace",
    "train.clamp_to": "mean",
    "train.own_recon": 0,
    "train.decoder_steps": 0,
    "train.decoder_swap": 0,
    "train.edit_recon": 0,
    "train.edit_share": 0.25,
}


class RecordError(click.ClickException):
    """A record that cannot be read (one line naming it)."""


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts -> one dict keyed by dotted paths (``{"train": {"lr": x}}`` -> ``{"train.lr": x}``)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= flatten(v, key + ".")
        else:
            out[key] = v
    return out


def dig(d: dict, dotted: str):
    """The value at a dotted path of nested dicts, or None where the path ends early."""
    for key in dotted.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def read_record(path: Path) -> dict:
    """The record as written: experiment name -> {params, metrics, ...}."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RecordError(f"{path}: unreadable experiments record ({e})") from None
    if not isinstance(record, dict):
        raise RecordError(f"{path}: expected a mapping of experiment names")
    return record


def load_runs(path: Path) -> dict:
    """The record for reporting: a run recorded before a param of ``ADDED_PARAMS`` existed gets its value."""
    record = read_record(path)
    for run in record.values():
        if isinstance(run, dict) and isinstance(run.get("params"), dict):
            run["params"] = {**ADDED_PARAMS, **run["params"]}
    return record


def seed_groups(runs: dict) -> dict[str, list[str]]:
    """Experiments that differ only in ``seed`` (and ignored params), keyed by the first one's name.

    Only experiments whose names share the first dash-separated token (the study's id of a setting,
    ``c05`` in ``c05-s1``) group: the same params run on code that computes differently (c09 reran
    c05's setting with the fused decoder) form a group of their own.
    """
    groups: dict[str, list[str]] = {}
    for name in sorted(runs):
        p = {
            k: v
            for k, v in runs[name]["params"].items()
            if k != "seed" and k not in IGNORED_PARAMS and not k.startswith(OTHER_PIPELINES)
        }
        key = json.dumps([name.split("-")[0], p], sort_keys=True)
        groups.setdefault(key, []).append(name)
    return {names[0]: names for names in groups.values() if len(names) > 1}


# (row label, path under dcign, path under baseline, path under pixels) of the results table (docs/results.md).
RESULTS_ROWS = (
    ("reconstruction PSNR, dB (test sweeps)", "reconstruction.psnr", "reconstruction.psnr", None),
    ("\\|corr\\| azimuth latent vs truth (grid)", "factors.azimuth.abs_pearson", "factors.azimuth.abs_pearson", None),
    ("\\|corr\\| elevation", "factors.elevation.abs_pearson", "factors.elevation.abs_pearson", None),
    ("\\|corr\\| light", "factors.light.abs_pearson", "factors.light.abs_pearson", None),
    ("continuous MIG", "disentanglement.mig_continuous", "disentanglement.mig_continuous", None),
    ("discretised MIG", "disentanglement.mig", "disentanglement.mig", None),
    ("DCI disentanglement", "disentanglement.dci_disentanglement", "disentanglement.dci_disentanglement", None),
    ("active latents (intrinsic group / whole code)", "latents.n_active.intrinsic", "latents.n_active.total", None),
    ("invariance ratio of the intrinsic group (low = invariant)", "invariance.ratio_intrinsic", None, None),
    (
        "recognition across pose, rank-1 (chance 0.01)",
        "recognition.intrinsic.identification.top1",
        "recognition.whole.identification.top1",
        "recognition.whole.identification.top1",
    ),
    (
        "rank-1 at \\|Δazimuth\\| 60–90°",
        "recognition.intrinsic.identification.delta_060_090.top1",
        "recognition.whole.identification.delta_060_090.top1",
        "recognition.whole.identification.delta_060_090.top1",
    ),
    (
        "verification AUC across pose",
        "recognition.intrinsic.verification.auc",
        "recognition.whole.verification.auc",
        "recognition.whole.verification.auc",
    ),
    *(
        row
        for f in ("azimuth", "elevation", "light")
        for row in (
            (
                f"re-render {f}: edit PSNR − best reference, dB",
                f"rerender.{f}.psnr_margin",
                f"rerender.{f}.psnr_margin",
                None,
            ),
            (f"re-render {f}: identity preserved", f"rerender.{f}.edit.identity", f"rerender.{f}.edit.identity", None),
            (
                f"re-render {f}: identity kept by the input unchanged",
                f"rerender.{f}.input.identity",
                f"rerender.{f}.input.identity",
                None,
            ),
            (
                f"re-render {f}: identity of decode(µ) of the true target",
                f"rerender.{f}.truth_code.identity",
                f"rerender.{f}.truth_code.identity",
                None,
            ),
        )
    ),
)
