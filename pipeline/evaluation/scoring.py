"""Score one trained model on the held-out data: pure functions of codes, images and factors.

Three held-out sets, each used for one job so that nothing is selected and scored on the same data:

- the **test sweeps** (one factor varies per batch): choose a baseline's latent per factor, fit the
  calibration between latents and angles, reconstruction, invariance of the inactive groups;
- the **factor grid** (identities x azimuths x elevations x lights, every combination): latent-vs-angle
  correlation, the disentanglement scores, re-rendering with its references and identity preservation;
- the **recognition set** (identities at evenly spaced azimuths, elevation and light per image):
  identification and verification across pose; its first half of identities only supplies the
  standardisation statistics and the verification threshold, its second half is scored.

Every headline figure carries a 95% cluster-bootstrap interval over face identities (``*_lo``,
``*_hi``): images of one face are not independent samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline import metrics as M
from pipeline.evaluation import calibration as C
from render.pool import allowed_cores
from render.shards import RenderedDataset
from render.vocabulary import FACTORS, SWEEP_GROUP

DELTA_BINS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))  # |azimuth difference| bins, degrees, (lo, hi]


@dataclass(frozen=True)
class EvalConfig:
    seed: int = 0  # seeds every sampled score and bootstrap
    encode_batch: int = 256  # images per forward pass
    score_samples: int = 2000  # training points for the beta-VAE / FactorVAE classifiers (half as many to test)
    mig_samples: int = 2000  # Monte Carlo samples per latent for the continuous MIG
    rerender_pairs: int = 300  # (source, target) grid pairs per factor for re-rendering scores
    traversal_faces: int = 4  # faces shown in the traversal and re-render pictures
    bootstrap: int = 1000  # cluster-bootstrap resamples for the intervals of the headline figures
    mig_halves: int = 20  # random halves of the identities for the continuous MIG's interval (each a full estimate)
    mean_image_neighbours: int = 20  # training images averaged for the "mean image at the target factors"
    dci_trees: int = 100  # boosting stages of DCI's gradient-boosted trees (disentanglement_lib: 100)


def _psnr(mse) -> float:
    """PSNR in dB of images in [0, 1]; an exact match is capped at 100 dB rather than infinite."""
    return float(10 * np.log10(1.0 / max(float(mse), 1e-10)))


def _with_ci(name: str, ci: dict) -> dict:
    return {name: ci["mean"] if "mean" in ci else ci[name], f"{name}_lo": ci["lo"], f"{name}_hi": ci["hi"]}


# --- which latents stand for each factor ----------------------------------------------------------
def factor_latents(grouped: bool, groups: dict[str, slice], mu_test: np.ndarray, test: RenderedDataset) -> dict:
    """Per factor: the latent indices that stand for it and how they were chosen.

    A DC-IGN's factors have assigned groups. A model without groups (the entangled baseline) is
    given, per factor, its single latent with the largest |Pearson r| with the angle over that
    factor's **test sweep** batches (Fig. 7's "best single latent"); it is then scored on the grid.
    """
    out = {}
    codes = mu_test.reshape(test.n_batches, test.batch_size, -1)
    for f in FACTORS:
        if grouped:
            sl = groups[f]
            out[f] = {"latents": np.arange(sl.start, sl.stop), "selection": "assigned", "selection_abs_pearson": None}
            continue
        sel = test.sweep == f
        if not sel.any():
            raise ValueError(f"no {f} test sweep to choose the baseline's {f} latent on")
        best = M.best_single_latent(codes[sel].reshape(-1, codes.shape[-1]), test.factor(f)[sel].ravel())
        i = max(int(best["index"]), 0)  # -1 when every latent is constant (a collapsed model)
        out[f] = {
            "latents": np.array([i]),
            "selection": "best single latent on the test sweeps",
            "selection_abs_pearson": best["abs_pearson"],
        }
    return out


def index_groups(coords: dict, latent_dim: int) -> dict[str, np.ndarray]:
    """Latent indices per group for scoring: the factors' latents, and every other latent as intrinsic."""
    used = np.concatenate([coords[f]["latents"] for f in FACTORS])
    rest = np.setdiff1d(np.arange(latent_dim), used)
    return {**{f: coords[f]["latents"] for f in FACTORS}, "intrinsic": rest}


def calibrate(mu_test: np.ndarray, test: RenderedDataset, coords: dict, grid_flat: dict) -> C.Calibration:
    """Each factor's latent <-> angle calibration from the test sweeps' codes (N, D), spanning the grid's range."""
    codes = mu_test.reshape(test.n_batches, test.batch_size, -1)
    sweeps = {
        f: (codes[test.sweep == f].reshape(-1, codes.shape[-1]), test.factor(f)[test.sweep == f].ravel())
        for f in FACTORS
    }
    spans = {f: (float(grid_flat[f].min()), float(grid_flat[f].max())) for f in FACTORS}  # ends included
    return C.fit({f: v for f, v in sweeps.items() if len(v[1])}, {f: coords[f]["latents"] for f in FACTORS}, spans)


# --- test sweeps ------------------------------------------------------------------------------------
def reconstruction_scores(x: np.ndarray, recon: np.ndarray, identity: np.ndarray, cfg: EvalConfig) -> dict:
    """MSE, PSNR (with a 95% interval over identities) and SSIM of decode(encode(x)) on the test images."""
    x, recon = x.astype(np.float32), recon.astype(np.float32)
    mse_i = ((x - recon) ** 2).reshape(len(x), -1).mean(axis=1)
    ci = M.cluster_bootstrap(lambda w: _psnr(np.sum(w * mse_i) / np.sum(w)), identity, cfg.bootstrap, cfg.seed)
    mse = float(mse_i.mean())
    return {
        "mse": mse,
        "psnr": _psnr(mse),
        "psnr_lo": ci["lo"],
        "psnr_hi": ci["hi"],
        "ssim": M.ssim(recon, x),
    }


def sweep_scatter(mu_test: np.ndarray, test: RenderedDataset, coords: dict) -> dict:
    """Fig. 6: (true angle, factor latent) over the factor's test sweep batches, per factor."""
    codes = mu_test.reshape(test.n_batches, test.batch_size, -1)
    out = {}
    for f in FACTORS:
        sel = test.sweep == f
        if sel.any():
            out[f] = (test.factor(f)[sel].ravel(), codes[sel][..., coords[f]["latents"][0]].ravel())
    return out


def invariance_scores(mu_test: np.ndarray, test: RenderedDataset, groups: dict[str, np.ndarray]) -> dict:
    """Within-batch / overall spread of every group that is inactive in a test sweep batch."""
    by_batch = list(mu_test.reshape(test.n_batches, test.batch_size, -1))
    active = [SWEEP_GROUP.get(s, "intrinsic") for s in test.sweep]
    return M.invariance_ratio(by_batch, groups, active)


def latent_diagnostics(mu: np.ndarray, logvar: np.ndarray, groups: dict[str, np.ndarray]) -> dict:
    """Active latents and KL per group, and KL per latent (nats per image), to make a dead group visible.

    KL per latent is keyed ``z00``, ``z01``, ... by column, so ``dvc metrics diff`` lists each one.
    """
    act = M.active_latents(mu, logvar, {g: np.asarray(ix, dtype=np.int64) for g, ix in groups.items()})
    per = act["per_group"]
    width = max(2, len(str(act["n_latents"] - 1)))
    return {
        "n_active": {g: int(per[g]["n_active"]) for g in groups} | {"total": int(act["n_active"])},
        "n_active_au": {g: int(per[g]["n_active_au"]) for g in groups} | {"total": int(act["n_active_au"])},
        "kl": {g: float(per[g]["kl"]) for g in groups} | {"total": float(act["kl_total"])},
        "kl_per_latent": {f"z{j:0{width}d}": float(v) for j, v in enumerate(act["kl_per_latent"])},
    }


# --- the factor grid ------------------------------------------------------------------------------
def grid_layout(grid: RenderedDataset) -> tuple[np.ndarray, list[int], dict]:
    """Factor indices (N, 4) over (identity, azimuth, elevation, light), sizes, and flat factor values."""
    flat = {f: grid.factor(f).ravel() for f in (*FACTORS, "identity")}
    idx, sizes = [], []
    for f in ("identity", *FACTORS):
        values, inverse = np.unique(flat[f], return_inverse=True)
        idx.append(inverse)
        sizes.append(len(values))
    return np.stack(idx, axis=1), sizes, flat


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    w = w / w.sum()
    xc, yc = x - np.sum(w * x), y - np.sum(w * y)
    den = np.sqrt(np.sum(w * xc * xc) * np.sum(w * yc * yc))
    return float(np.sum(w * xc * yc) / den) if den > 0 else float("nan")


def factor_scores(mu_grid: np.ndarray, flat: dict, coords: dict, cfg: EvalConfig) -> dict:
    """Each factor's latent against the true angle over the whole grid (selection was on the test sweeps)."""
    out = {}
    for f in FACTORS:
        i = int(coords[f]["latents"][0])
        z, v = mu_grid[:, i].astype(np.float64), flat[f].astype(np.float64)
        c = M.latent_factor_correlation(z, v)
        ci = M.cluster_bootstrap(
            lambda w, z=z, v=v: abs(_weighted_pearson(z, v, w)), flat["identity"], cfg.bootstrap, cfg.seed
        )
        out[f] = {
            "pearson": c["pearson"],
            "abs_pearson": abs(c["pearson"]),
            "abs_pearson_lo": ci["lo"],
            "abs_pearson_hi": ci["hi"],
            "spearman": c["spearman"],
            "r2": c["r2"],
            "latent_index": i,
            "selection": coords[f]["selection"],
        }
        if coords[f]["selection_abs_pearson"] is not None:
            out[f]["selection_abs_pearson"] = coords[f]["selection_abs_pearson"]
    return out


def disentanglement_scores(
    mu: np.ndarray, logvar: np.ndarray, idx: np.ndarray, sizes: list[int], cfg: EvalConfig
) -> dict:
    """Standard scores on the grid's latent means (factors: identity, azimuth, elevation, light)."""
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(mu))
    tr, te = order[: len(mu) // 2], order[len(mu) // 2 :]
    pose = [1, 2, 3]  # azimuth, elevation, light: the published MIG on rendered faces uses these
    pose_sizes = [sizes[i] for i in pose]
    mig_c = M.mig_continuous(mu, logvar, idx[:, pose], pose_sizes, n_samples=cfg.mig_samples, seed=cfg.seed)

    def mig_of(rows: np.ndarray) -> float:
        sub = idx[rows][:, pose]
        return M.mig_continuous(mu[rows], logvar[rows], sub, pose_sizes, n_samples=cfg.mig_samples, seed=cfg.seed)[
            "mig"
        ]

    # Halves of the identities, not a bootstrap: duplicated faces bias mutual information upward.
    mig_ci = M.half_sample_interval(mig_of, idx[:, 0], cfg.mig_halves, cfg.seed)
    mig_d = M.mig(mu, idx)
    n_jobs = len(allowed_cores())  # the factors' classifiers in parallel (the same result for any count)
    dci = M.dci(mu[tr], idx[tr], mu[te], idx[te], seed=cfg.seed, n_estimators=cfg.dci_trees, n_jobs=n_jobs)
    angles = idx[:, pose].astype(float)  # the linear variant only makes sense for ordered factors
    dci_lin = M.dci_linear(mu[tr], angles[tr], mu[te], angles[te])
    names = ("identity", *FACTORS)
    beta = M.beta_vae_score(
        mu, idx, sizes, n_train=cfg.score_samples, n_eval=cfg.score_samples // 2, seed=cfg.seed, standardise=True
    )
    return {
        "mig": mig_d["mig"],
        "mig_per_factor": dict(zip(names, mig_d["mig_per_factor"], strict=True)),
        "mig_continuous": mig_c["mig"],
        "mig_continuous_lo": mig_ci["lo"],
        "mig_continuous_hi": mig_ci["hi"],
        "mig_continuous_per_factor": dict(zip(FACTORS, mig_c["mig_per_factor"], strict=True)),
        "dci_disentanglement": dci["disentanglement"],
        "dci_completeness": dci["completeness"],
        "dci_informativeness": dci["informativeness"],
        "dci_informativeness_per_factor": dict(zip(names, dci["informativeness_per_factor"], strict=True)),
        "dci_linear_disentanglement": dci_lin["disentanglement"],
        "dci_linear_completeness": dci_lin["completeness"],
        "dci_linear_informativeness": dci_lin["informativeness"],
        "sap": M.sap(mu[tr], angles[tr], mu[te], angles[te])["sap"],
        "beta_vae_accuracy": beta["eval_accuracy"],
        "beta_vae_standardised_accuracy": beta["eval_accuracy_standardised"],
        "factor_vae_accuracy": M.factor_vae_score(
            mu, idx, sizes, n_train=cfg.score_samples, n_eval=cfg.score_samples // 2, seed=cfg.seed
        )["eval_accuracy"],
    }


class MeanImage:
    """Mean of the training images nearest to given (azimuth, elevation, light): pose and light right, no face."""

    def __init__(self, images: np.ndarray, factors: np.ndarray, ranges: np.ndarray, k: int):
        from scipy.spatial import cKDTree

        self.images = images  # (N, R, R) uint8
        self.scale = 1.0 / np.maximum(ranges, 1e-9)  # each angle in units of its range
        self.tree = cKDTree(factors * self.scale)
        self.k = min(k, len(images))

    def __call__(self, targets: np.ndarray) -> np.ndarray:
        _, nn = self.tree.query(np.asarray(targets) * self.scale, k=self.k)
        nn = nn.reshape(len(targets), self.k)
        return np.stack([self.images[row].astype(np.float32).mean(axis=0) / 255.0 for row in nn])


REFERENCES = ("input", "reconstruction", "mean_image", "truth_code")  # besides the edit itself


def rerender_plans(idx: np.ndarray, sizes: list[int], pairs: int, seed: int) -> list[tuple]:
    """Per factor, ``pairs`` (source rows, target index of the factor, target grid keys (P, 4)) on the grid.

    Each source is a random grid image; its target is the same image with that factor moved to
    another of its grid values (drawn uniformly among the others).
    """
    rng = np.random.default_rng(seed + 1)
    plans = []
    for k in range(1, len(FACTORS) + 1):
        src = rng.integers(len(idx), size=pairs)
        n = max(sizes[k], 2)  # a one-valued factor is skipped by the callers; n keeps the draws well defined
        tgt_val = (idx[src, k] + rng.integers(1, n, size=len(src))) % max(sizes[k], 1)  # another angle
        keys = idx[src].copy()
        keys[:, k] = tgt_val
        plans.append((src, tgt_val, keys))
    return plans


def candidate_rows(lookup: dict, keys: np.ndarray, n_id: int) -> np.ndarray:
    """(P, identities) grid rows of every identity at each pair's target factors (the identification gallery)."""
    return np.array([[lookup[(c, *map(int, key[1:]))] for c in range(n_id)] for key in keys])


def identity_kept(images: np.ndarray, candidates: np.ndarray, true_id: np.ndarray, cfg: EvalConfig) -> dict:
    """``identity`` (rank-1 identification among the candidates) with its cluster-bootstrap interval over the
    source identities ``true_id``: ``identity_lo``, ``identity_hi``."""
    ident = M.identity_preservation(images, candidates, true_id)
    ci = M.bootstrap_mean(ident["correct"].astype(float), true_id, cfg.bootstrap, cfg.seed)
    return _with_ci("identity", {"mean": ident["top1"], "lo": ci["lo"], "hi": ci["hi"]})


def edit_codes(mu_source: np.ndarray, cal: C.FactorCalibration, angles: np.ndarray) -> np.ndarray:
    """The paper's edit: (P, D) source codes with the factor's latents set to the calibrated code of (P,) angles."""
    edited = np.asarray(mu_source, dtype=np.float64).copy()
    edited[:, cal.latents] = cal.code(angles)
    return edited


def rerender_scores(
    decode: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    mu: np.ndarray,
    idx: np.ndarray,
    sizes: list[int],
    flat: dict,
    calibration: C.Calibration,
    mean_image: MeanImage,
    cfg: EvalConfig,
) -> tuple[dict, dict]:
    """Edit one factor's latents to a target grid angle, decode, compare with the true render there.

    The code for the target angle comes from the calibration fitted on the test sweeps. Beside the
    edit (``edit``), the same targets are compared with: the input image (``input``), its unedited
    reconstruction decode(mu_source) (``reconstruction``), the mean training image at the target
    factors (``mean_image``: right pose and light, no identity) and decode(mu_truth) (``truth_code``,
    an upper bound). ``identity`` is rank-1 identification of each image among the grid's
    identities rendered at the same target factors, by pixel correlation: a generic head scores at
    chance (1 / identities). ``psnr_margin`` is the edit's PSNR minus the best of input,
    reconstruction and mean image.
    """
    lookup = {tuple(r): i for i, r in enumerate(idx)}
    n_id = sizes[0]
    x = images.astype(np.float32) / 255.0
    angles = np.stack([flat[f] for f in FACTORS], axis=1)  # (N, 3)
    plans = rerender_plans(idx, sizes, cfg.rerender_pairs, cfg.seed)
    # Decode each grid code once: the sources' reconstructions and the targets' decode(mu_truth).
    rows = np.unique(np.concatenate([p[0] for p in plans] + [[lookup[tuple(r)] for r in p[2]] for p in plans]))
    recon_all = np.zeros((len(mu), *images.shape[1:]), np.float32)
    recon_all[rows] = decode(mu[rows])
    out, examples = {}, {}
    for k, f in enumerate(FACTORS, start=1):
        if f not in calibration or sizes[k] < 2:
            continue
        cal = calibration[f]
        values = np.unique(flat[f])  # the grid's angles of this factor, ascending (= index order)
        src, tgt_val, keys = plans[k - 1]
        tgt = np.array([lookup[tuple(r)] for r in keys])
        edited = edit_codes(mu[src], cal, values[tgt_val])
        truth = x[tgt]
        shown = {
            "edit": decode(edited.astype(np.float32)),
            "input": x[src],
            "reconstruction": recon_all[src],
            "mean_image": mean_image(angles[tgt]),
            "truth_code": recon_all[tgt],
        }
        candidates = x[candidate_rows(lookup, keys, n_id)]
        true_id = clusters = idx[src, 0]  # the identities are the bootstrap's clusters
        scores = {}
        for name, img in shown.items():
            mse_i = ((img - truth) ** 2).reshape(len(src), -1).mean(axis=1)
            psnr_ci = M.cluster_bootstrap(
                lambda w, m=mse_i: _psnr(np.sum(w * m) / np.sum(w)), clusters, cfg.bootstrap, cfg.seed
            )
            scores[name] = {
                "psnr": _psnr(mse_i.mean()),
                "psnr_lo": psnr_ci["lo"],
                "psnr_hi": psnr_ci["hi"],
                "ssim": M.ssim(img, truth),
                **identity_kept(img, candidates, true_id, cfg),
            }
        best_ref = max(scores[r]["psnr"] for r in ("input", "reconstruction", "mean_image"))
        out[f] = {**scores, "psnr_margin": scores["edit"]["psnr"] - best_ref, "identity_chance": 1.0 / n_id}
        n = cfg.traversal_faces
        examples[f] = np.stack(
            [shown["input"][:n], shown["edit"][:n], truth[:n], shown["truth_code"][:n], shown["mean_image"][:n]], axis=1
        )  # (n, 5, R, R)
    return out, examples


# --- the recognition set -------------------------------------------------------------------------
def recognition_split(recog: RenderedDataset) -> dict[str, np.ndarray]:
    """Flat identity, azimuth and the development mask (first half of the identities) of the recognition set."""
    ids = recog.identity.ravel()
    az = recog.azimuth.ravel()
    order = np.unique(recog.identity[:, 0])  # batch order = identity order
    dev_ids = recog.identity[: max(1, recog.n_batches // 2), 0]
    if len(order) < 4 or len(dev_ids) >= len(order):
        raise ValueError(f"the recognition set needs at least 4 identities, it has {len(order)}")
    return {"ids": ids, "azimuth": az, "dev": np.isin(ids, dev_ids)}


def recognition_scores(features: np.ndarray, split: dict, cfg: EvalConfig, metric: str = "correlation") -> dict:
    """Identification (by |azimuth difference|) and verification across pose on the scored half.

    Standardisation statistics and the verification threshold come from the development half.
    Identification: one gallery view per identity (the one nearest frontal), every other view a
    probe. Verification: balanced same/different pairs of images at different azimuths, scored by
    the correlation of standardised codes (the DC-IGN analysis); ROC AUC, and the accuracy at the
    threshold that is best on the development pairs.
    """
    ids, az, dev = split["ids"], split["azimuth"], split["dev"]
    f = features.reshape(len(ids), -1).astype(np.float64)
    mean, std = M.standardisation(f[dev])
    test = ~dev
    frontal = float(az[np.argmin(np.abs(az))])
    gallery = test & (az == frontal)
    probes = test & (az != frontal)
    ident = M.identification(f[gallery], ids[gallery], f[probes], ids[probes], mean, std, metric=metric)
    correct = ident["correct"].astype(float)
    p_ids, delta = ids[probes], np.abs(az[probes] - frontal)
    overall = M.bootstrap_mean(correct, p_ids, cfg.bootstrap, cfg.seed)
    out_id = {
        "top1": overall["mean"],
        "top1_lo": overall["lo"],
        "top1_hi": overall["hi"],
        "chance": 1.0 / gallery.sum(),
    }
    for lo, hi in DELTA_BINS:
        sel = (delta > lo) & (delta <= hi)
        if sel.any():
            b = M.bootstrap_mean(correct[sel], p_ids[sel], cfg.bootstrap, cfg.seed)
            out_id[f"delta_{lo:03.0f}_{hi:03.0f}"] = {"top1": b["mean"], "top1_lo": b["lo"], "top1_hi": b["hi"]}

    def pairs(mask):
        rows = np.flatnonzero(mask)
        i, j, same = M.verification_pairs(ids[rows], az[rows], seed=cfg.seed)
        return rows[i], rows[j], same

    di, dj, dsame = pairs(dev)
    threshold = M.best_threshold(M.pair_scores(f, di, dj, mean, std, metric=metric), dsame)
    ti, tj, tsame = pairs(test)
    s = M.pair_scores(f, ti, tj, mean, std, metric=metric)
    ver = verification_scores(s, tsame, threshold, ids[ti], ids[tj], cfg)
    return {
        "identification": out_id,
        "verification": {**ver, "threshold": threshold, "pairs": int(len(s))},
    }


def verification_scores(
    scores: np.ndarray, same: np.ndarray, threshold: float, id_i: np.ndarray, id_j: np.ndarray, cfg: EvalConfig
) -> dict:
    """ROC AUC and accuracy at ``threshold`` of scored pairs, each with a cluster-bootstrap interval over
    the pairs' identities: a replicate weighs a pair by its two identities' draw counts, rescaled per
    class (``M.class_balanced``) so that same- and different-face pairs keep their proportions."""
    uniq, inv = np.unique(np.concatenate([id_i, id_j]), return_inverse=True)
    ci, cj = np.split(inv, 2)

    def weighted(fn):
        # w_id: bootstrap draw count of every identity in uniq
        return lambda w_id: fn(M.class_balanced(w_id[ci] * w_id[cj], same))

    auc_ci = M.cluster_bootstrap(weighted(lambda w: M.roc_auc(scores, same, w)), uniq, cfg.bootstrap, cfg.seed)
    acc_ci = M.cluster_bootstrap(
        weighted(lambda w: M.accuracy_at(scores, same, threshold, w)), uniq, cfg.bootstrap, cfg.seed
    )
    return {
        "auc": M.roc_auc(scores, same),
        "auc_lo": auc_ci["lo"],
        "auc_hi": auc_ci["hi"],
        "accuracy": M.accuracy_at(scores, same, threshold),
        "accuracy_lo": acc_ci["lo"],
        "accuracy_hi": acc_ci["hi"],
    }
