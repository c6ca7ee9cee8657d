"""The linear reference for reconstruction: PCA with k components fitted on the training renders.

How many dimensions does a face of this dataset need? Principal component analysis gives the best
reconstruction in mean squared error of any *linear* k-dimensional code (Eckart & Young 1936), so
its PSNR on the test sweeps at k = the model's latent size is the bar that a nonlinear
auto-encoder with as many latents should clear, and the k at which it reaches a target PSNR says
how many linear dimensions that target takes. Pixels in [0, 1], the pooled-MSE PSNR of
``pipeline.metrics.reconstruction`` (as the evaluation's reconstruction PSNR).

    python -m pipeline.study.pca_reference --train data/train/azimuth ... --test data/test/azimuth ... \
        --k 32 --k 64 --json docs/experiments/pca.json
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
import numpy as np
from threadpoolctl import threadpool_limits

from pipeline.metrics.reconstruction import psnr
from render.atomic import atomic_write_json
from render.shards import ShardError, load_dataset


def pca_psnr(train: np.ndarray, test: np.ndarray, ks: list[int]) -> dict:
    """PSNR (dB) of the rank-k PCA reconstruction of ``test`` for each k, the basis fitted on ``train``.

    ``train``, ``test``: (N, D) float arrays in [0, 1]. Returns ``{"mean_image": psnr of the
    training mean, "k": {k: {"test": psnr, "train": psnr, "variance": explained fraction}}}``.
    """
    if max(ks) > min(train.shape):
        raise ValueError(f"k = {max(ks)} exceeds the rank bound {min(train.shape)} of the training set")
    mu = train.mean(0)
    x = (train - mu).astype(np.float64)
    with threadpool_limits(1):  # the same bits however many cores the machine has
        evals, evecs = np.linalg.eigh(x.T @ x)  # ascending; the covariance's eigenbasis
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
    out = {"mean_image": psnr(test, np.broadcast_to(mu, test.shape)), "k": {}}
    for k in ks:
        v = evecs[:, :k]  # (D, k)
        rec = {name: (a - mu) @ v @ v.T + mu for name, a in (("test", test), ("train", train))}
        out["k"][int(k)] = {
            "test": psnr(test, rec["test"]),
            "train": psnr(train, rec["train"]),
            "variance": float(evals[:k].sum() / evals.sum()),
        }
    return out


def _images(dirs: tuple[Path, ...], option: str) -> np.ndarray:
    try:
        data = load_dataset(list(dirs))
    except ShardError as e:
        raise click.ClickException(f"{option}: {e}") from None
    return data.images.reshape(-1, int(np.prod(data.images.shape[2:]))).astype(np.float32) / 255.0


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--train", "train_dirs", multiple=True, required=True, type=click.Path(path_type=Path))
@click.option("--test", "test_dirs", multiple=True, required=True, type=click.Path(path_type=Path))
@click.option("--k", "ks", multiple=True, type=click.IntRange(1, 4096), default=(32,), show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the result here.")
def main(train_dirs, test_dirs, ks, json_path):
    """PSNR of PCA reconstructions of the test sweeps, the basis fitted on the training sweeps."""
    train, test = _images(train_dirs, "--train"), _images(test_dirs, "--test")
    if train.shape[1] != test.shape[1]:
        raise click.ClickException(f"--test: images of {test.shape[1]} pixels, --train has {train.shape[1]}")
    try:
        res = pca_psnr(train, test, sorted(set(ks)))
    except ValueError as e:
        raise click.ClickException(f"--k: {e}") from None
    click.echo(f"mean image: {res['mean_image']:.2f} dB")
    for k, r in res["k"].items():
        click.echo(f"k = {k:4d}: test {r['test']:.2f} dB, train {r['train']:.2f} dB, variance {r['variance']:.3f}")
    if json_path:
        record = {
            "date": dt.date.today().isoformat(),
            "train": [str(d) for d in train_dirs],
            "test": [str(d) for d in test_dirs],
            "n_train": int(train.shape[0]),
            "n_test": int(test.shape[0]),
            **res,
        }
        atomic_write_json(json_path, record)


if __name__ == "__main__":
    main()
