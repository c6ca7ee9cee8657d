"""The interactive explorer behind ``dcign-explore``: move a model's latents, watch the decoded face
beside Blender's render of the same face at the same angles.

A factor's slider is in degrees. The factor's latents (a DC-IGN's group, a baseline's best single
latent: whatever the calibration file records as ``<factor>_latents``) are set to the calibrated
code for that angle (:meth:`FactorCalibration.code`, the table fitted on the test sweeps) in the
code of the chosen face, and the result is decoded; the label shows the code and the angle it
reads back as (:meth:`FactorCalibration.angle`). Every calibrated factor is set this way, so the
decoded face always stands for the same three angles as the render beside it. The first few
intrinsic latents have sliders of their own, in units of the prior's standard deviation.

A face is a held-out test image (its scene, angles and face coefficients, is in its shard), a new
face drawn from the face model and rendered, or an uploaded image (no scene known: no render).
One persistent Blender scene lives in a worker process (:mod:`.worker`).

This module needs only the project's dependencies; the page (:mod:`.page`) imports Gradio (the
``explore`` extra) when it is built.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline.evaluation import calibration as C
from pipeline.explorer import ExploreError
from pipeline.explorer.worker import BlenderWorker
from render.scene_renderer import Scene
from render.vocabulary import FACTORS

log = logging.getLogger("dcign.explore")

N_INTRINSIC = 4  # intrinsic latents with a slider
INTRINSIC_RANGE = 3.0  # their sliders span +- this many prior standard deviations
DISPLAY = 256  # pixels of a shown image's side (nearest-neighbour enlargement)
TRAVERSE_FRAMES = 12  # frames of a traversal
TEST_SWEEPS = ("azimuth", "elevation", "light", "intrinsic")


# --- models ----------------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A trained model with its calibration, as the explorer uses it."""

    name: str
    path: Path
    model: object  # dcign.model.DCIGN
    calibration: C.Calibration
    method: str  # dcign, vae, ...
    grouped: bool  # latent groups (DC-IGN) or one best latent per factor (baselines)

    @property
    def resolution(self) -> int:
        return int(self.model.config.resolution)

    @property
    def latent_dim(self) -> int:
        return int(self.model.config.latent)

    @property
    def intrinsic(self) -> list[int]:
        return intrinsic_latents(self)


def load(checkpoint: str | Path, calibration: str | Path | None = None, name: str | None = None) -> LoadedModel:
    """Load a checkpoint and its calibration (default: ``eval/calibration/<model dir>.npz`` above it).

    Raises ``CheckpointError``, ``CalibrationError`` or :class:`ExploreError`, each naming the file.
    """
    from dcign.checkpoint import load_model, trained_method
    from dcign.config import GROUPED_METHODS

    checkpoint = Path(checkpoint)
    model, cfg, info = load_model(checkpoint)
    method = trained_method(info, checkpoint)
    if calibration is None:
        calibration = C.default_calibration(checkpoint)
        if calibration is None:
            raise ExploreError(
                f"{checkpoint}: no eval/calibration/<model>.npz above it (dcign-evaluate writes one); "
                "pass a calibration"
            )
    table = C.load(calibration, cfg.latent)
    missing = [f for f in FACTORS if f not in table]
    if missing:
        raise C.CalibrationError(f"{calibration}: no calibration for {', '.join(missing)}")
    resolved = checkpoint.resolve()
    name = name or (resolved if resolved.is_dir() else resolved.parent).name
    return LoadedModel(name, checkpoint, model, table, method, method in GROUPED_METHODS)


def intrinsic_latents(lm: LoadedModel, n: int = N_INTRINSIC) -> list[int]:
    """The first ``n`` intrinsic latents: the DC-IGN's intrinsic group, or a baseline's latents no factor uses."""
    if lm.grouped:
        s = lm.model.groups["intrinsic"]
        return list(range(s.start, s.stop))[:n]
    used = {int(i) for c in lm.calibration.values() for i in c.latents}
    return [i for i in range(lm.latent_dim) if i not in used][:n]


def check_resolution(lm: LoadedModel, resolution: int) -> None:
    if lm.resolution != resolution:
        raise ExploreError(
            f"{lm.path}: trained at {lm.resolution}x{lm.resolution}, but this explorer shows {resolution}x{resolution} "
            f"faces (its Blender scene renders at that size); start dcign-explore with this checkpoint instead"
        )


# --- slider values -> code -> image (pure) ---------------------------------------------------------
def clamp_angle(cal: C.FactorCalibration, angle: float) -> float:
    lo, hi = cal.range
    return float(min(max(float(angle), lo), hi))


def slider_code(mu: np.ndarray, calibration: C.Calibration, angles: dict, intrinsic: dict | None = None) -> np.ndarray:
    """The code shown: ``mu`` with each factor's latents at the calibrated code of its angle (degrees,
    clamped to the calibrated range) and the given intrinsic latents (index -> value) set."""
    code = np.array(mu, dtype=np.float64).ravel()
    for f, angle in angles.items():
        if f not in calibration:
            raise ExploreError(f"{f}: not calibrated (calibrated: {', '.join(calibration) or 'none'})")
        cal = calibration[f]
        code[cal.latents] = cal.code(clamp_angle(cal, angle))
    for i, value in (intrinsic or {}).items():
        if not 0 <= int(i) < code.size:
            raise ExploreError(f"latent z{i} does not exist (the model has {code.size} latents)")
        code[int(i)] = float(value)
    return code


def decode_code(model, code: np.ndarray) -> np.ndarray:
    """One code -> uint8 (R, R) image."""
    from pipeline.evaluation.encode import decode

    out = decode(model, np.asarray(code, dtype=np.float32)[None])[0]
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def encode_face(model, image: np.ndarray) -> np.ndarray:
    """uint8 (R, R) -> (D,) posterior mean."""
    from pipeline.evaluation.encode import encode

    return encode(model, np.asarray(image, dtype=np.uint8)[None])[0][0]


def fmt_degrees(angle: float) -> str:
    return f"{float(angle):.1f}°"


def degree_label(factor: str, cal: C.FactorCalibration, code: np.ndarray) -> str:
    """What a factor's latents hold in ``code`` and the angle they read back as through the calibration."""
    values = ", ".join(f"z{int(i)} = {float(code[i]):+.2f}" for i in cal.latents)
    return f"{factor} {values} (reads as {fmt_degrees(cal.angle(code[cal.latents[0]]))})"


def slider_label(factor: str, cal: C.FactorCalibration) -> str:
    latents = ", ".join(f"z{int(i)}" for i in cal.latents)
    lo, hi = cal.range
    return f"{factor.capitalize()}: {latents} (degrees, calibrated over {fmt_degrees(lo)} .. {fmt_degrees(hi)})"


def scene_label(scene: Scene) -> str:
    return ", ".join(f"{f} {fmt_degrees(getattr(scene, f))}" for f in FACTORS)


def compare(decoded: np.ndarray, rendered: np.ndarray) -> dict[str, float]:
    """PSNR (dB) and SSIM of the decoded image against the render, both in [0, 1]."""
    from pipeline.metrics import psnr, ssim

    x = np.asarray(decoded, np.float64) / 255.0
    y = np.asarray(rendered, np.float64) / 255.0
    return {"psnr": psnr(x, y), "ssim": ssim(x, y)}


def enlarge(image: np.ndarray, size: int = DISPLAY) -> np.ndarray:
    """Nearest-neighbour enlargement by the largest integer factor that fits ``size`` (pixels stay sharp)."""
    k = max(1, int(size) // max(image.shape[:2]))
    return np.repeat(np.repeat(image, k, axis=0), k, axis=1)


# --- faces -----------------------------------------------------------------------------------------
@dataclass
class Face:
    """What the explorer shows: an image and, for a rendered face, the scene it was rendered from."""

    source: str  # where it came from, for the page
    image: np.ndarray  # uint8 (R, R) at the explorer's resolution
    scene: Scene | None = None  # rendered faces only
    note: str | None = None  # e.g. that an upload was resized


def read_upload(path: str | Path, resolution: int) -> Face:
    """An uploaded image file -> grey face at ``resolution`` (resized with a note); ExploreError if it is none."""
    from pipeline.images import ImageError, decode_image, resize

    name = Path(path).name
    try:
        grey = decode_image(path)
    except ImageError as e:
        raise ExploreError(f"upload {name}: {str(e).split(': ', 1)[-1]}") from None
    note = None
    if grey.shape != (resolution, resolution):
        note = (
            f"{name}: resized from {grey.shape[1]}x{grey.shape[0]} to the model's {resolution}x{resolution} "
            "(and turned grey, as the renders)"
        )
    return Face(f"upload {name}", resize(grey, resolution), None, note)


class TestFaces:
    """The held-out test sweeps (``data/test/<sweep>``), with the scene of every image."""

    def __init__(self, root: str | Path):
        from render.shards import load_dataset, read_manifest

        self.root = Path(root)
        self.sets = {}
        self.config: dict = {}
        for sweep in TEST_SWEEPS:
            directory = self.root / sweep
            if not (directory / "manifest.json").exists():
                continue
            self.sets[sweep] = load_dataset([directory])  # ShardError names the file
            self.config = self.config or dict(read_manifest(directory).get("config") or {})
        if not self.sets:
            raise ExploreError(f"{self.root}: no rendered test sweep ({', '.join(TEST_SWEEPS)}) in this folder")

    def count(self, sweep: str) -> int:
        d = self.sets[sweep]
        return d.n_batches * d.batch_size

    def face(self, sweep: str, index: int, resolution: int) -> Face:
        if sweep not in self.sets:
            raise ExploreError(f"{self.root}: no {sweep} test sweep (found: {', '.join(self.sets)})")
        d, n = self.sets[sweep], self.count(sweep)
        if not 0 <= int(index) < n:
            raise ExploreError(f"{self.root / sweep}: image {index} does not exist ({n} images: 0..{n - 1})")
        if d.resolution != resolution:
            raise ExploreError(
                f"{self.root / sweep}: rendered at {d.resolution}x{d.resolution} but the model was trained at "
                f"{resolution}x{resolution}"
            )
        if d.images.ndim != 4:
            raise ExploreError(f"{self.root / sweep}: RGB renders; the models read grey images")
        b, i = divmod(int(index), d.batch_size)
        scene = Scene(
            float(d.azimuth[b, i]),
            float(d.elevation[b, i]),
            float(d.light[b, i]),
            tuple(float(c) for c in d.shape[b, i]),
            tuple(float(c) for c in d.albedo[b, i]),
        )
        return Face(f"test {sweep} image {index}", d.images[b, i].copy(), scene)


def random_scene(seed: int, face_model, ranges: dict, fraction: float = 0.6) -> Scene:
    """A new face from the face model's prior, at angles drawn from the middle ``fraction`` of each range."""
    rng = np.random.default_rng([int(seed), 0xE4])
    shape, albedo = face_model.sample(rng)
    angles = {}
    for f in FACTORS:
        lo, hi = ranges[f]
        mid, half = (lo + hi) / 2.0, (hi - lo) / 2.0 * fraction
        angles[f] = float(rng.uniform(mid - half, mid + half))
    return Scene(**angles, shape=tuple(map(float, shape[0])), albedo=tuple(map(float, albedo[0])))


# --- one view --------------------------------------------------------------------------------------
@dataclass
class View:
    """What the page shows for one setting of the sliders."""

    code: np.ndarray  # (D,)
    decoded: np.ndarray  # uint8 (R, R)
    scene: Scene | None  # the render's scene (None: no face scene known)
    rendered: np.ndarray | None  # uint8 (R, R)
    metrics: dict | None  # PSNR/SSIM of decoded vs rendered
    seconds: dict = field(default_factory=dict)  # decode, render

    def render_label(self) -> str:
        if self.scene is None:
            return "No Blender render: an uploaded image has no known scene."
        return f"Blender render at {scene_label(self.scene)}"

    def metrics_label(self) -> str:
        timing = ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in self.seconds.items())
        if self.metrics is None:
            return f"Decoded only ({timing})."
        m = self.metrics
        return f"Decoded vs rendered: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f} ({timing})"


class Explorer:
    """The models, the test faces, the face model and the Blender worker the page uses (thread-safe)."""

    def __init__(self, models: dict[str, LoadedModel], renderer, face_model, test_faces: TestFaces | None = None):
        if not models:
            raise ExploreError("no model to explore")
        self.models = dict(models)
        self.default = next(iter(self.models))
        self.resolution = self.models[self.default].resolution
        for lm in self.models.values():
            check_resolution(lm, self.resolution)
        self.renderer = renderer  # a BlenderWorker, or anything with render(scenes) -> images
        self.face_model = face_model
        self.test_faces = test_faces
        self._lock = threading.Lock()  # one forward pass at a time: requests share the torch modules

    def model(self, name: str | None) -> LoadedModel:
        name = name or self.default
        if name not in self.models:
            raise ExploreError(f"no model named {name!r} (loaded: {', '.join(self.models)})")
        return self.models[name]

    def add(self, lm: LoadedModel) -> str:
        check_resolution(lm, self.resolution)
        name, k = lm.name, 2
        while name in self.models and self.models[name].path != lm.path:
            name, k = f"{lm.name}-{k}", k + 1
        self.models[name] = replace(lm, name=name)
        return name

    @property
    def ranges(self) -> dict:
        return {f: self.models[self.default].calibration[f].range for f in FACTORS}

    # faces
    def test_face(self, sweep: str, index: int) -> Face:
        if self.test_faces is None:
            raise ExploreError("no test data: start dcign-explore with --test-data data/test")
        return self.test_faces.face(sweep, int(index), self.resolution)

    def random_face(self, seed: int) -> Face:
        scene = random_scene(int(seed), self.face_model, self.ranges)
        image = self.renderer.render([scene])[0]
        return Face(f"random face (seed {int(seed)})", image, scene)

    def upload(self, path: str | Path) -> Face:
        return read_upload(path, self.resolution)

    # codes and views
    def encode(self, name: str, face: Face) -> np.ndarray:
        lm = self.model(name)
        with self._lock:
            return encode_face(lm.model, face.image)

    def start_values(self, name: str, face: Face, mu: np.ndarray) -> dict:
        """Sliders for a new face: a rendered face's true angles, else the angles its code reads as."""
        lm = self.model(name)
        if face.scene is not None:
            angles = {f: getattr(face.scene, f) for f in FACTORS}
        else:
            angles = C.read_angles(lm.calibration, mu)
        # to 0.1 degree, as the labels show them (a tenth of a degree moves no pixel of a 64x64 face)
        angles = {f: round(clamp_angle(lm.calibration[f], a), 1) for f, a in angles.items()}
        return {"angles": angles, "intrinsic": {i: round(float(mu[i]), 2) for i in lm.intrinsic}}

    def view(self, name: str, face: Face, mu: np.ndarray, angles: dict, intrinsic: dict) -> View:
        lm = self.model(name)
        t0 = time.perf_counter()
        code = slider_code(mu, lm.calibration, angles, intrinsic)
        with self._lock:
            decoded = decode_code(lm.model, code)
        seconds = {"decode": time.perf_counter() - t0}
        if face.scene is None:
            return View(code, decoded, None, None, None, seconds)
        scene = replace(face.scene, **{f: clamp_angle(lm.calibration[f], angles[f]) for f in FACTORS})
        t1 = time.perf_counter()
        rendered = self.renderer.render([scene])[0]
        seconds["render"] = time.perf_counter() - t1
        return View(code, decoded, scene, rendered, compare(decoded, rendered), seconds)

    def code_label(self, name: str, code: np.ndarray) -> str:
        lm = self.model(name)
        lines = [degree_label(f, lm.calibration[f], code) for f in FACTORS]
        lines.append("intrinsic " + ", ".join(f"z{i} = {code[i]:+.2f}" for i in lm.intrinsic))
        return "\n".join(lines)

    def traverse(self, name: str, face: Face, mu: np.ndarray, angles: dict, intrinsic: dict, which: str) -> list:
        """Frames of a sweep of one slider over its range: (caption, decoded, rendered or None) each."""
        lm = self.model(name)
        frames = []
        if which in FACTORS:
            lo, hi = lm.calibration[which].range
            for a in np.linspace(lo, hi, TRAVERSE_FRAMES):
                v = self.view(name, face, mu, {**angles, which: float(a)}, intrinsic)
                frames.append((f"{which} {fmt_degrees(a)}", v.decoded, v.rendered))
            return frames
        index = int(which[1:]) if which[:1] == "z" and which[1:].isdigit() else -1
        if index not in lm.intrinsic:
            names = ", ".join(f"z{i}" for i in lm.intrinsic)
            raise ExploreError(f"{which}: not one of the intrinsic sliders ({names})")
        for value in np.linspace(-INTRINSIC_RANGE, INTRINSIC_RANGE, TRAVERSE_FRAMES):
            code = slider_code(mu, lm.calibration, angles, {**intrinsic, index: float(value)})
            with self._lock:
                decoded = decode_code(lm.model, code)
            frames.append((f"{which} {value:+.1f}", decoded, None))  # no scene variable to render
        return frames


@contextlib.contextmanager
def opened(
    checkpoint: str | Path,
    calibration: str | Path | None = None,
    baseline: str | Path | None = None,
    baseline_calibration: str | Path | None = None,
    test_data: str | Path | None = None,
    face_model: str = "default",
    samples: int | None = None,
    optional_baseline: bool = False,
):
    """Load the models, the test faces and the face model, start Blender; yield the :class:`Explorer`.

    ``optional_baseline``: a baseline that does not load (or is of another resolution) is left out
    with a warning instead of failing. ``samples``: Cycles samples (default: the test data's, else 4).
    """
    from render.faces.loaders import load_face_model
    from render.job import model_fingerprint

    main = load(checkpoint, calibration)
    models = {main.name: main}
    if baseline is not None:
        try:
            other = load(baseline, baseline_calibration)
            check_resolution(other, main.resolution)
            name = other.name if other.name not in models else f"{other.name}-baseline"
            models[name] = replace(other, name=name)
        except (ExploreError, C.CalibrationError, ValueError) as e:  # CheckpointError is a ValueError
            if not optional_baseline:
                raise
            log.warning("baseline left out: %s", e)
    tests = TestFaces(test_data) if test_data is not None else None
    faces = load_face_model(face_model)
    if tests is not None:
        recorded = tests.config.get("model_sha256")
        if recorded and recorded != model_fingerprint(faces):
            log.warning("%s was rendered with another face model than %r: renders differ", test_data, face_model)
        r = tests.config.get("resolution")
        if r and int(r) != main.resolution:
            log.warning(
                "%s was rendered at %sx%s, the model at %dx%d: test images cannot be shown",
                test_data,
                r,
                r,
                main.resolution,
                main.resolution,
            )
    if samples is None:
        samples = int(tests.config.get("samples", 4)) if tests is not None else 4
    with BlenderWorker(face_model, main.resolution, samples) as worker:
        yield Explorer(models, worker, faces, tests)


def frame_strip(caption: str, decoded: np.ndarray, rendered: np.ndarray | None, scale: int = 3) -> np.ndarray:
    """One traversal frame: decoded | rendered side by side, enlarged, with a caption below."""
    import cv2

    r = decoded.shape[0] * scale
    parts = [enlarge(decoded, r)] + ([enlarge(rendered, r)] if rendered is not None else [])
    gap = np.full((r, 4), 255, np.uint8)
    row = np.concatenate([p if i == 0 else np.concatenate([gap, p], axis=1) for i, p in enumerate(parts)], axis=1)
    out = np.full((r + 22, row.shape[1]), 255, np.uint8)
    out[:r] = row
    text = caption.replace("°", " deg")  # OpenCV's Hershey fonts are ASCII only
    cv2.putText(out, text, (4, r + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1, cv2.LINE_AA)
    return out


def write_gif(frames: list, path: str | Path, seconds_per_frame: float = 0.25) -> Path:
    """Frames (caption, decoded, rendered) -> an endlessly looping GIF."""
    from PIL import Image

    if not frames:
        raise ExploreError("a traversal needs at least one frame")
    images = [Image.fromarray(frame_strip(*f)) for f in frames]
    path = Path(path)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 * seconds_per_frame), loop=0)
    return path
