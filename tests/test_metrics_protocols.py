"""Known-answer tests of the recognition, bootstrap, identity-preservation and active-latent metrics.

Recognition set-up: ``N_IDS`` identities each rendered at ``N_AZ`` azimuths (one image per pair).

* ``invariant``: the code is the identity's embedding plus tiny noise, whatever the pose.
* ``pose``: the code is the azimuth's embedding (plus tiny noise), whatever the identity.

Standardisation statistics come from a separate split (other identities), as the protocol requires.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.metrics import (
    accuracy_at,
    active_latents,
    best_threshold,
    bootstrap_mean,
    cluster_bootstrap,
    identification,
    identity_preservation,
    kl_per_latent,
    pair_scores,
    roc_auc,
    similarity,
    standardisation,
    verification_pairs,
)
from pipeline.metrics.recognition import _sample_negative_pairs

N_IDS, N_AZ, D = 200, 6, 8


@pytest.fixture(scope="module")
def faces() -> dict:
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(N_IDS), N_AZ)
    az = np.tile(np.arange(N_AZ), N_IDS)
    id_emb = rng.standard_normal((N_IDS, D))
    az_emb = rng.standard_normal((N_AZ, D))
    other = rng.standard_normal((500, D))  # separate split: other identities' codes
    return {
        "ids": ids,
        "az": az,
        "invariant": id_emb[ids] + 0.01 * rng.standard_normal((ids.size, D)),
        "pose": az_emb[az] + 0.01 * rng.standard_normal((ids.size, D)),
        "pose_exact": az_emb[az],
        "stats": standardisation(other),
        "pairs": verification_pairs(ids, az, seed=0),
    }


def _gallery_probes(faces) -> tuple[np.ndarray, np.ndarray]:
    return faces["az"] == 0, faces["az"] != 0


# ----------------------------------------------------------------------------- standardisation / similarity


def test_standardisation_and_similarity_definitions():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((100, 4)) * [1.0, 2.0, 3.0, 0.0] + [0.0, 1.0, -1.0, 5.0]
    mean, std = standardisation(ref)
    np.testing.assert_allclose(mean, ref.mean(axis=0))
    np.testing.assert_allclose(std[:3], ref.std(axis=0)[:3])
    assert std[3] == 1.0  # constant latent: only centred
    a, b = rng.standard_normal((5, 4)), rng.standard_normal((7, 4))
    za, zb = (a - mean) / std, (b - mean) / std
    corr = similarity(a, b, mean, std)
    assert corr.shape == (5, 7)
    assert corr[2, 3] == pytest.approx(np.corrcoef(za[2], zb[3])[0, 1])
    cos = similarity(a, b, mean, std, metric="cosine")
    assert cos[1, 4] == pytest.approx(za[1] @ zb[4] / np.linalg.norm(za[1]) / np.linalg.norm(zb[4]))
    euc = similarity(a, b, mean, std, metric="euclidean")
    assert euc[0, 6] == pytest.approx(-np.linalg.norm(za[0] - zb[6]))
    with pytest.raises(ValueError):
        similarity(a, b, mean, std, metric="l7")


def test_pair_scores_match_the_similarity_matrix():
    rng = np.random.default_rng(1)
    codes = rng.standard_normal((30, 5))
    mean, std = standardisation(rng.standard_normal((50, 5)))
    i, j = rng.integers(30, size=40), rng.integers(30, size=40)
    for metric in ("correlation", "cosine", "euclidean"):
        full = similarity(codes, codes, mean, std, metric=metric)
        np.testing.assert_allclose(pair_scores(codes, i, j, mean, std, metric=metric, chunk=7), full[i, j], atol=1e-12)


# ----------------------------------------------------------------------------- identification


def test_identification_invariant_code_is_perfect(faces):
    g, p = _gallery_probes(faces)
    mean, std = faces["stats"]
    ids, codes = faces["ids"], faces["invariant"]
    for metric in ("correlation", "cosine", "euclidean"):
        out = identification(codes[g], ids[g], codes[p], ids[p], mean, std, metric=metric)
        assert out["top1"] == 1.0
        assert out["correct"].dtype == bool and out["correct"].shape == (int(p.sum()),)
    with pytest.raises(ValueError):
        identification(codes[g], ids[g], codes[p], ids[p], mean, std, metric="l7")


def test_identification_pose_code_is_at_chance(faces):
    g, p = _gallery_probes(faces)
    mean, std = faces["stats"]
    ids = faces["ids"]
    out = identification(faces["pose"][g], ids[g], faces["pose"][p], ids[p], mean, std, chunk=64)
    assert out["top1"] == pytest.approx(1.0 / N_IDS, abs=0.01)
    # All gallery codes identical: every gallery entry ties. Which one wins is up to the last bit of the BLAS
    # product (it differs between CPUs), so only the bound is known: a probe is right only if the tie goes to
    # its own identity, and each probe has one of N_IDS gallery entries.
    exact = identification(faces["pose_exact"][g], ids[g], faces["pose_exact"][p], ids[p], mean, std)
    assert exact["top1"] <= 1.0 / N_IDS + 0.01


def test_identification_wrong_labels_fail():
    rng = np.random.default_rng(0)
    ids = np.arange(20)
    centres = rng.standard_normal((20, 8))
    mean, std = standardisation(rng.standard_normal((200, 8)))
    probes = centres + 0.05 * rng.standard_normal(centres.shape)
    assert identification(centres, ids, probes, ids, mean, std)["top1"] == 1.0
    assert identification(centres, ids, probes, rng.permutation(ids), mean, std)["top1"] < 0.3


# ----------------------------------------------------------------------------- verification


def _brute_force_pairs(ids, az) -> tuple[set, set]:
    same, diff = set(), set()
    for i in range(ids.size):
        for j in range(i + 1, ids.size):
            if az[i] != az[j]:
                (same if ids[i] == ids[j] else diff).add((i, j))
    return same, diff


def test_verification_pairs_balanced_cross_azimuth():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(6), 8)
    az = np.tile(np.repeat(np.arange(4), 2), 6)  # two images per (identity, azimuth): same-azimuth pairs exist
    order = rng.permutation(ids.size)
    ids, az = ids[order], az[order]
    i, j, same = verification_pairs(ids, az, seed=0)
    expected_same, expected_diff = _brute_force_pairs(ids, az)
    assert i.dtype == np.int64 and j.dtype == np.int64 and same.dtype == bool
    assert np.all(i < j) and np.all(az[i] != az[j])
    assert set(zip(i[same].tolist(), j[same].tolist(), strict=True)) == expected_same
    assert np.count_nonzero(same) == np.count_nonzero(~same) == len(expected_same)
    negatives = set(zip(i[~same].tolist(), j[~same].tolist(), strict=True))
    assert len(negatives) == len(expected_same) and negatives <= expected_diff
    again = verification_pairs(ids, az, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(again, (i, j, same), strict=True))
    other = verification_pairs(ids, az, seed=1)
    assert not np.array_equal(other[0], i) or not np.array_equal(other[1], j)
    with pytest.raises(ValueError):
        verification_pairs(np.zeros(5, dtype=int), np.arange(5), seed=0)  # one identity: no negatives


def test_negative_pair_sampling_without_listing_all_pairs():
    ids = np.repeat(np.arange(10), 12)
    az = np.tile(np.arange(12), 10)
    rng = np.random.default_rng(0)
    i, j = _sample_negative_pairs(ids, az, 3000, rng, enumerate_limit=0)
    assert i.size == 3000 and np.all(i < j)
    assert np.all(ids[i] != ids[j]) and np.all(az[i] != az[j])
    assert np.unique(i * ids.size + j).size == 3000
    # roughly uniform: each identity is in about 2 * 3000 / 10 pairs
    assert np.all(np.abs(np.bincount(np.concatenate([ids[i], ids[j]])) - 600) < 100)


def test_verification_invariant_and_pose_codes(faces):
    i, j, same = faces["pairs"]
    mean, std = faces["stats"]
    assert roc_auc(pair_scores(faces["invariant"], i, j, mean, std), same) == 1.0
    assert roc_auc(pair_scores(faces["pose"], i, j, mean, std), same) == pytest.approx(0.5, abs=0.05)


# ----------------------------------------------------------------------------- ROC AUC / threshold


def _brute_force_auc(scores, labels, weights) -> float:
    num = den = 0.0
    for sp, wp in zip(scores[labels], weights[labels], strict=True):
        for sn, wn in zip(scores[~labels], weights[~labels], strict=True):
            num += wp * wn * ((sp > sn) + 0.5 * (sp == sn))
            den += wp * wn
    return num / den


def test_roc_auc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.random(60) < 0.4
    scores = np.round(rng.standard_normal(60) + labels, 1)  # rounding makes many ties
    assert np.unique(scores).size < 40
    ones = np.ones(60)
    assert roc_auc(scores, labels) == pytest.approx(_brute_force_auc(scores, labels, ones), abs=1e-12)
    weights = rng.integers(0, 4, size=60).astype(float)
    expected = _brute_force_auc(scores, labels, weights)
    assert roc_auc(scores, labels, weights) == pytest.approx(expected, abs=1e-12)
    assert roc_auc(scores, labels, weights) == pytest.approx(roc_auc_score(labels, scores, sample_weight=weights))
    # integer weights = repeated items
    rep = weights.astype(int)
    assert roc_auc(np.repeat(scores, rep), np.repeat(labels, rep)) == pytest.approx(expected, abs=1e-12)
    ranks = np.unique(scores, return_inverse=True)[1]
    assert roc_auc(ranks, labels, weights) == pytest.approx(expected, abs=1e-12)
    assert roc_auc(np.array([5, 10**9, 7]), [False, True, False]) == 1.0  # large integers: sorted, not binned
    assert roc_auc([0.1, 0.2, 0.3], [True, False, False]) == 0.0
    assert roc_auc([0.5, 0.5], [1, 0]) == 0.5
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))


def test_best_threshold_and_accuracy():
    scores = np.array([0.1, 0.3, 0.2, 0.7, 0.5])
    labels = np.array([False, False, False, True, True])
    t = best_threshold(scores, labels)
    assert t == pytest.approx(0.4)
    assert accuracy_at(scores, labels, t) == 1.0
    # non-separable: cuts at 2 and at 4 both reach 3/4, the lowest (midpoint 1.5) wins
    assert best_threshold([1.0, 2.0, 3.0, 4.0], [0, 1, 0, 1]) == 1.5
    assert accuracy_at([1.0, 2.0, 3.0, 4.0], [0, 1, 0, 1], 1.5) == 0.75
    assert accuracy_at([1.0, 2.0, 3.0, 4.0], [0, 1, 0, 1], 1.5, weights=[0, 1, 1, 0]) == 0.5
    # all different: a threshold above every score
    t = best_threshold([0.2, 0.4], [0, 0])
    assert t > 0.4 and accuracy_at([0.2, 0.4], [0, 0], t) == 1.0
    assert best_threshold([0.2, 0.4], [1, 1]) == 0.2


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_mean_matches_normal_theory():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(2000)
    out = bootstrap_mean(x, np.arange(x.size), n_boot=1000, seed=0)
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert out["mean"] == pytest.approx(x.mean())
    assert out["lo"] == pytest.approx(x.mean() - 1.96 * se, abs=0.25 * se)
    assert out["hi"] == pytest.approx(x.mean() + 1.96 * se, abs=0.25 * se)


def test_cluster_bootstrap_equals_vectorised_mean():
    rng = np.random.default_rng(1)
    clusters = rng.integers(40, size=300)
    x = rng.standard_normal(300) + clusters % 3
    general = cluster_bootstrap(lambda w: float(np.sum(w * x) / np.sum(w)), clusters, n_boot=300, seed=5)
    fast = bootstrap_mean(x, clusters, n_boot=300, seed=5)
    assert general["n_boot"] == 300
    assert general["lo"] == pytest.approx(fast["lo"], abs=1e-12)
    assert general["hi"] == pytest.approx(fast["hi"], abs=1e-12)


def test_bootstrap_resamples_clusters_not_items():
    rng = np.random.default_rng(2)
    labels = rng.permutation(np.arange(100, 400))  # 300 clusters, arbitrary label order
    v = rng.standard_normal(300)
    per_cluster = bootstrap_mean(v, labels, seed=3)
    rep_labels, rep_values = np.repeat(labels, 4), np.repeat(v, 4)  # 4 identical items per cluster
    order = rng.permutation(rep_labels.size)
    clustered = bootstrap_mean(rep_values[order], rep_labels[order], seed=3)
    assert clustered["lo"] == pytest.approx(per_cluster["lo"], abs=1e-12)
    assert clustered["hi"] == pytest.approx(per_cluster["hi"], abs=1e-12)
    # treating the 4 copies as independent items would halve the width
    naive = bootstrap_mean(rep_values, np.arange(rep_values.size), seed=3)
    width = per_cluster["hi"] - per_cluster["lo"]
    assert naive["hi"] - naive["lo"] == pytest.approx(width / 2, rel=0.15)


def test_bootstrap_constant_deterministic_and_nan_replicates():
    clusters = np.repeat(np.arange(10), 3)
    const = cluster_bootstrap(lambda w: 3.0, clusters, n_boot=50)
    assert const == {"lo": 3.0, "hi": 3.0, "n_boot": 50}
    flat = bootstrap_mean(np.full(30, 0.7), clusters, n_boot=50)
    assert flat["lo"] == pytest.approx(0.7, abs=1e-12) and flat["hi"] == pytest.approx(0.7, abs=1e-12)
    x = np.random.default_rng(0).standard_normal(30)
    a, b = bootstrap_mean(x, clusters, seed=4), bootstrap_mean(x, clusters, seed=4)
    assert a == b and bootstrap_mean(x, clusters, seed=5) != a
    # a replicate without cluster 0 is undefined here: left out and counted
    out = cluster_bootstrap(lambda w: float(np.sum(w * x) / np.sum(w)) if w[0] > 0 else math.nan, clusters)
    assert 500 < out["n_boot"] < 1000  # P(cluster 0 missed) = 0.9^10 ~ 0.35
    assert out["lo"] < out["hi"]


# ----------------------------------------------------------------------------- identity preservation


def test_identity_preservation_true_candidate_plus_noise():
    rng = np.random.default_rng(0)
    cands = rng.random((200, 6, 8, 8))
    true = rng.integers(6, size=200)
    images = cands[np.arange(200), true] + 0.1 * rng.standard_normal((200, 8, 8))
    out = identity_preservation(images, cands, true)
    assert out["top1"] == 1.0 and out["correct"].dtype == bool and out["correct"].shape == (200,)
    colour = np.repeat(cands[..., None], 3, axis=-1)
    assert identity_preservation(np.repeat(images[..., None], 3, axis=-1), colour, true, chunk=17)["top1"] == 1.0
    with pytest.raises(ValueError):
        identity_preservation(images, cands[:, :, :4], true)


def test_identity_preservation_generic_head_is_at_chance():
    rng = np.random.default_rng(1)
    n, c = 3000, 5
    head = rng.random((12, 12))
    cands = head + 0.3 * rng.standard_normal((n, c, 12, 12))  # identities: the head plus individual detail
    images = np.broadcast_to(cands.mean(axis=(0, 1)), (n, 12, 12))  # the same blurry mean for every item
    true = rng.integers(c, size=n)
    assert identity_preservation(images, cands, true)["top1"] == pytest.approx(1.0 / c, abs=0.03)


def test_identity_preservation_ties_go_to_the_first_candidate():
    rng = np.random.default_rng(2)
    cands = rng.random((4, 5, 6, 6))
    cands[:, 3] = cands[:, 1]  # candidates 1 and 3 identical
    images = cands[:, 1] + 0.01 * rng.standard_normal((4, 6, 6))
    out = identity_preservation(images, cands, np.array([1, 3, 1, 3]))
    assert out["correct"].tolist() == [True, False, True, False]
    constant = identity_preservation(np.ones((4, 6, 6)), cands, np.array([0, 1, 2, 0]))
    assert constant["correct"].tolist() == [True, False, False, True]  # correlation 0 with all: candidate 0


# ----------------------------------------------------------------------------- active latents / KL


def test_kl_per_latent_closed_form():
    mu = np.array([[1.0], [-1.0], [2.0]])
    logvar = np.array([[0.0], [math.log(2.0)], [-1.0]])
    # per image 0.5 * (mu^2 + var - logvar - 1): 0.5, 0.5 * (2 - log 2), 0.5 * (4 + e^-1)
    expected = (0.5 + (1.0 - 0.5 * math.log(2.0)) + (2.0 + 0.5 * math.exp(-1.0))) / 3
    assert kl_per_latent(mu, logvar)[0] == pytest.approx(expected)


def test_active_latents_known_cases():
    rng = np.random.default_rng(0)
    n = 2000
    mu = np.zeros((n, 4))
    logvar = np.zeros((n, 4))  # latent 0: at the prior
    mu[:, 1], logvar[:, 1] = rng.standard_normal(n), -4.0  # informative
    mu[:, 2], logvar[:, 2] = 3.0, -4.0  # narrow posterior, constant mean
    mu[:, 3] = rng.standard_normal(n)  # moving mean, posterior as wide as the prior
    kl = kl_per_latent(mu, logvar)
    assert kl[0] == 0.0
    assert kl[1] == pytest.approx(0.5 * (np.mean(mu[:, 1] ** 2) + math.exp(-4.0) + 4.0 - 1.0))
    groups = {"z_a": slice(0, 2), "z_b": slice(2, 4)}
    out = active_latents(mu, logvar, groups)
    expected_a = {"n_latents": 2, "n_active": 1, "n_active_au": 1, "kl": pytest.approx(kl[:2].sum())}
    assert out["per_group"]["z_a"] == expected_a
    assert out["per_group"]["z_b"]["n_active"] == 1 and out["per_group"]["z_b"]["n_active_au"] == 1
    assert out["n_latents"] == 4 and out["n_active"] == 2 and out["n_active_au"] == 2
    assert out["kl_per_latent"] == pytest.approx(kl.tolist())
    assert out["kl_total"] == pytest.approx(kl.sum())
    only_0 = active_latents(mu[:, :1], logvar[:, :1], {"z": slice(0, 1)})
    assert only_0["n_active"] == 0 and only_0["n_active_au"] == 0
