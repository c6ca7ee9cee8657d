"""``dcign-fit``: infer the scene behind face images (azimuth, elevation, light, shape and albedo).

``dcign-fit face.png --checkpoint models/dcign --out fits/``
``dcign-fit photos/ --checkpoint models/dcign --objective both --budget 200 --out fits/``
``dcign-fit data/test/intrinsic --checkpoint models/dcign --limit 20 --out fits/``  (known factors: errors too)

Input: one image (PNG/JPEG, any size: turned grey as the renders and resized to the model's
resolution, with a note), a folder of them, or a rendered sweep directory (``manifest.json`` and
shards), whose known factors add the errors to each row. Each image is fitted as
:mod:`pipeline.inverse.fit` describes: the amortised estimate (the code read through the calibration that
``dcign-evaluate`` wrote, ``eval/calibration/<model>.npz`` by default), then a CMA-ES search with
``--budget`` renders per objective (``code``: the DC-IGN codes of render and image; ``pixel``:
their pixels, the baseline; ``both``), rendering with one persistent Blender scene.

Output in ``--out``:

- ``results/<image>.json``: the image's rows (one per method), the trace of each search (best
  objective per CMA-ES generation) and the settings it was fitted with. Written atomically when
  the image is done: a rerun skips every image whose result is there with the same settings, so
  the fit of a folder resumes after a kill.
- ``images/<image>.png``: input | amortised re-render | best render of each search.
- ``fits.csv`` and ``fits.json``: every row of every image (columns ``image``, ``method``,
  ``azimuth``, ``elevation``, ``light``, ``shape_0``..., ``albedo_0``..., ``objective``,
  ``start_objective``, ``renders``, ``seconds``, ``psnr``, ``ssim``; and ``true_*``, ``error_*``,
  ``shape_correlation`` for a sweep directory); ``trace.csv``: every search's trace.

Bad input (a file that is no image, a sweep rendered at another resolution than the checkpoint,
a calibration of another model, a face model that does not load) stops the command with one line
naming the file before anything is written.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import click
import numpy as np

from pipeline.evaluation import calibration as C
from pipeline.images import ImageError, decode_image, encode_image, resize
from pipeline.inverse.fit import MAX_BUDGET, FitConfig, FitError, SearchSpace, fit_image, fit_rows, traces
from pipeline.inverse.results import finite, item_seed, load_result, strip, write_result
from render import stopping
from render.atomic import atomic_write_bytes, atomic_write_json, check_writable, sha256_bytes, sha256_file
from render.job import MAX_SAMPLES
from render.scene_renderer import SceneRenderer
from render.stopping import stop_on_signals
from render.sweeps import DEFAULT_RANGES
from render.vocabulary import FACTORS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FORMAT = "dcign-fit/1"


@dataclass
class Item:
    """One image to fit."""

    name: str  # unique, used for the result files
    source: str  # where it came from
    image: np.ndarray  # uint8 (R, R) grey
    truth: dict | None = None  # known factors (rendered sweeps)
    note: str | None = None  # e.g. that it was resized


def _grey(images: np.ndarray) -> np.ndarray:
    from render.renderer import rgb_to_grey

    return rgb_to_grey(images) if images.ndim == 5 else images


def sweep_items(directory: Path, resolution: int, limit: int | None) -> list[Item]:
    """Images of a rendered sweep directory with their factors; ``limit`` evenly spaced ones."""
    from render.shards import ShardError, load_dataset

    try:
        d = load_dataset([directory])
    except ShardError as e:
        raise FitError(str(e)) from None
    if d.resolution != resolution:
        raise FitError(
            f"{directory}: rendered at {d.resolution}x{d.resolution} but the checkpoint was trained at "
            f"{resolution}x{resolution}"
        )
    images = _grey(d.images).reshape(-1, resolution, resolution)
    n = len(images)
    picks = np.arange(n) if not limit or limit >= n else np.unique(np.linspace(0, n - 1, limit).round().astype(int))
    items = []
    for k in picks:
        b, i = divmod(int(k), d.batch_size)
        truth = {f: float(d.factor(f)[b, i]) for f in FACTORS}
        truth |= {"shape": d.shape[b, i].tolist(), "albedo": d.albedo[b, i].tolist()}
        items.append(Item(f"{directory.name}-{k:05d}", f"{directory}#{k}", images[k], truth))
    return items


def file_items(paths: list[Path], resolution: int, allow_resize: bool) -> list[Item]:
    stems = [p.stem for p in paths]
    items = []
    for p in paths:
        try:
            grey = decode_image(p)
        except ImageError as e:
            raise FitError(str(e)) from None
        note = None
        if grey.shape != (resolution, resolution):
            if not allow_resize:
                raise FitError(
                    f"{p}: image is {grey.shape[1]}x{grey.shape[0]}, the checkpoint's resolution is "
                    f"{resolution}x{resolution} (drop --no-resize to resize it)"
                )
            note = f"resized from {grey.shape[1]}x{grey.shape[0]} to {resolution}x{resolution}"
        name = p.stem if stems.count(p.stem) == 1 else p.name
        items.append(Item(name, str(p), resize(grey, resolution), None, note))
    return items


def collect(path: Path, resolution: int, allow_resize: bool = True, limit: int | None = None) -> list[Item]:
    """The images to fit at ``path``: one image file, a folder of PNG/JPEG files, or a sweep directory."""
    if not path.exists():
        raise FitError(f"{path}: no such file or directory")
    if path.is_dir() and (path / "manifest.json").exists():
        return sweep_items(path, resolution, limit)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FitError(f"{path}: no PNG or JPEG images in this folder (nor a rendered sweep's manifest.json)")
        return file_items(files[:limit] if limit else files, resolution, allow_resize)
    return file_items([path], resolution, allow_resize)


# --- outputs ---------------------------------------------------------------------------------------
def flat_row(image: str, row: dict, truth: dict | None) -> dict:
    out = {"image": image}
    for k, v in row.items():
        if k in ("shape", "albedo"):
            out |= {f"{k}_{i}": c for i, c in enumerate(v)}
        else:
            out[k] = v
    if truth is not None:
        out |= {f"true_{f}": truth[f] for f in FACTORS}
    return out


def csv_bytes(rows: list[dict]) -> bytes:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def write_tables(out: Path, results: list[dict]) -> None:
    rows = [flat_row(r["image"], row, r["truth"]) for r in results for row in r["rows"]]
    trace = [{"image": r["image"], "method": m, **t} for r in results for m, tr in r["trace"].items() for t in tr]
    atomic_write_bytes(out / "fits.csv", csv_bytes(rows))
    atomic_write_json(out / "fits.json", finite(rows))
    atomic_write_bytes(out / "trace.csv", csv_bytes(trace))


# --- the command -----------------------------------------------------------------------------------
@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path), help="Trained model directory.")
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Calibration .npz from dcign-evaluate. Default: eval/calibration/<model dir name>.npz above the checkpoint.",
)
@click.option("--model", "face_model", default="default", show_default=True, help="Face model: default or a path.")
@click.option(
    "--budget", type=click.IntRange(2, MAX_BUDGET), default=200, show_default=True, help="Renders per search."
)
@click.option(
    "--objective",
    type=click.Choice(["code", "pixel", "ssim", "both"]),
    default="code",
    show_default=True,
    help="Search objective: DC-IGN code distance, pixel MSE, 1 - SSIM, or both code and pixel.",
)
@click.option("--shape-components", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--albedo-components", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--samples", type=click.IntRange(1, MAX_SAMPLES), default=4, show_default=True, help="Cycles samples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--weight",
    "weights",
    multiple=True,
    metavar="GROUP=W",
    help="Code objective: weight of a latent group (azimuth, elevation, light, intrinsic; default 1). Repeatable.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many images.")
@click.option("--resize/--no-resize", default=True, help="Resize images of another size (with a note) or refuse.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def main(**options):
    """Infer azimuth, elevation, light and face coefficients of face images by analysis-by-synthesis."""
    o = Options(**options)
    group_weights = parse_weights(o.weights)
    from dcign.checkpoint import CheckpointError
    from render.faces.loaders import FaceModelError

    try:
        setup = prepare(o, group_weights)
        with stop_on_signals("dcign-fit", "the results of the images fitted so far", defer=True):
            run(setup, o)
    except (FitError, C.CalibrationError, CheckpointError, FaceModelError) as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or o.out_dir}: {e.strerror or e}") from None


@dataclass(frozen=True)
class Options:
    """The command line, as click parses it: one field per option."""

    input_path: Path
    checkpoint: Path
    calibration: Path | None  # None: eval/calibration/<model dir name>.npz above the checkpoint
    face_model: str
    budget: int
    objective: str  # code, pixel, ssim or both
    shape_components: int
    albedo_components: int
    samples: int
    seed: int
    weights: tuple[str, ...]  # GROUP=W
    limit: int | None
    resize: bool
    out_dir: Path
    progress: bool

    @property
    def objectives(self) -> tuple[str, ...]:
        return ("code", "pixel") if self.objective == "both" else (self.objective,)


@dataclass
class Setup:
    """What the images are fitted with, loaded and checked before the first image is fitted."""

    items: list[Item]
    model: object  # dcign.model.DCIGN
    grouped: bool  # latent groups (the DC-IGN) or one code (the entangled baseline)
    table: C.Calibration
    faces: object  # the face model (render.faces.model.MorphableModel)
    cfg: FitConfig
    space: SearchSpace
    key: dict  # what a result must have been fitted with to be reused


def prepare(o: Options, group_weights: dict[str, float]) -> Setup:
    """Load the checkpoint, its calibration and the face model, collect the images, check the output folder."""
    from dcign.checkpoint import load_model, trained_method
    from dcign.config import GROUPED_METHODS
    from render.faces.loaders import load_face_model
    from render.job import model_fingerprint

    checkpoint, calibration = o.checkpoint, o.calibration
    model, mcfg, info = load_model(checkpoint)
    grouped = trained_method(info, checkpoint) in GROUPED_METHODS
    if calibration is None:
        calibration = C.default_calibration(checkpoint)
    if calibration is None:
        raise FitError(f"no eval/calibration/<model>.npz found above {checkpoint}; pass --calibration")
    table = C.load(calibration, mcfg.latent)
    faces = load_face_model(o.face_model)
    items = collect(o.input_path, mcfg.resolution, o.resize, o.limit)
    if len({it.name for it in items}) != len(items):
        raise FitError(f"{o.input_path}: image names are not unique")
    cfg = FitConfig(
        budget=o.budget,
        shape_components=min(o.shape_components, faces.n_shape),
        albedo_components=min(o.albedo_components, faces.n_albedo),
        seed=o.seed,
        weights=group_weights if grouped else {},
    ).validate()
    if group_weights and not grouped:
        print("note: the model has no latent groups; --weight is ignored", file=sys.stderr)
    for sub in ("results", "images"):
        check_writable(o.out_dir / sub, FitError)
    key = {  # what a result must have been fitted with to be reused
        "format": FORMAT,
        "checkpoint": sha256_file(Path(checkpoint) / "model.safetensors" if checkpoint.is_dir() else checkpoint),
        "calibration": sha256_file(calibration),
        "face_model": model_fingerprint(faces),
        "objectives": list(o.objectives),
        "samples": o.samples,
        **{k: v for k, v in asdict(cfg).items() if k != "seed"},
        "seed": o.seed,
    }
    ranges = {f: table[f].range if f in table else DEFAULT_RANGES[f] for f in FACTORS}
    space = SearchSpace(ranges, cfg.shape_components, cfg.albedo_components, cfg.coefficient_bound)
    key = json.loads(json.dumps(key))  # as it reads back from a result file
    return Setup(items, model, grouped, table, faces, cfg, space, key)


def parse_weights(items: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not sep or not np.isfinite(value) or value < 0:
            raise click.BadParameter(f"expected GROUP=WEIGHT with a weight >= 0, got {item!r}", param_hint="--weight")
        out[name.strip()] = value
    return out


def run(setup: Setup, o: Options) -> None:
    """Fit every image not fitted yet with the same settings, writing each result as it is done; then the tables."""
    from tqdm import tqdm

    items, key, cfg, out_dir = setup.items, setup.key, setup.cfg, o.out_dir
    results = []
    todo = []
    for it in items:
        done = load_result(out_dir / "results" / f"{it.name}.json", {**key, "image": sha256_bytes(it.image.tobytes())})
        (results.append(done) if done else todo.append(it))
    if results:
        print(f"{len(results)} of {len(items)} images already fitted in {out_dir}; fitting the rest", file=sys.stderr)
    if todo:
        with SceneRenderer(setup.faces, setup.model.config.resolution, o.samples) as render:
            bar = tqdm(todo, desc="fit", unit="image", disable=not o.progress, file=sys.stderr)
            for it in bar:
                if it.note:
                    tqdm.write(f"{it.source}: {it.note}", file=sys.stderr)
                c = replace(cfg, seed=item_seed(cfg.seed, it.name))
                fit = fit_image(it.image, setup.model, setup.table, render, setup.space, c, o.objectives, setup.grouped)
                result = {
                    "image": it.name,
                    "source": it.source,
                    "note": it.note,
                    "truth": it.truth,
                    "rows": fit_rows(fit, it.image, it.truth),
                    "trace": traces(fit),
                    "key": {**key, "image": sha256_bytes(it.image.tobytes())},
                }
                pictures = [it.image, fit.amortised_image, *(s.image for s in fit.searches.values())]
                atomic_write_bytes(out_dir / "images" / f"{it.name}.png", encode_image(strip(pictures)))
                results.append(write_result(out_dir / "results" / f"{it.name}.json", result))
                stopping.check()  # a SIGTERM or Ctrl-C during the image stops here, its result kept
                best = result["rows"][-1]
                bar.set_postfix_str(
                    f"az {best['azimuth']:.0f} el {best['elevation']:.0f} light {best['light']:.0f}", refresh=False
                )
    order = {it.name: i for i, it in enumerate(items)}
    results.sort(key=lambda r: order[r["image"]])
    write_tables(out_dir, results)
    print(f"{out_dir}: {len(results)} images fitted ({', '.join(o.objectives)}; budget {cfg.budget})", file=sys.stderr)


if __name__ == "__main__":
    main()
