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
One persistent Blender scene (:class:`render.scene_renderer.SceneRenderer`) lives in a worker process, so
that Blender's single-threaded Python never runs inside the web server's threads and a crash
there leaves the server up.

Pure functions and :class:`Explorer` need only the project's dependencies; :func:`build_app`
imports Gradio (the ``explore`` extra) when it is called.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline.evaluation import calibration as C
from render.scene_renderer import Scene, SceneRenderer
from render.vocabulary import FACTORS

log = logging.getLogger("dcign.explore")

N_INTRINSIC = 4  # intrinsic latents with a slider
INTRINSIC_RANGE = 3.0  # their sliders span +- this many prior standard deviations
DISPLAY = 256  # pixels of a shown image's side (nearest-neighbour enlargement)
TRAVERSE_FRAMES = 12  # frames of a traversal
RENDER_TIMEOUT = 120.0  # seconds before a render counts as lost (a dead worker never answers)
TEST_SWEEPS = ("azimuth", "elevation", "light", "intrinsic")
# Gradio phones home unless told not to (analytics, version checks); the Hugging Face client it
# pulls in likewise. The machines this runs on may have no internet at all.
OFFLINE_ENVIRONMENT = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}


class ExploreError(ValueError):
    """A model, face, upload or request the explorer cannot show (the message names it)."""


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
    from pipeline.evaluation.metrics import psnr, ssim

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


# --- Blender in a worker process -------------------------------------------------------------------
_scene_renderer: SceneRenderer | None = None  # inside the worker
_start_error = "the Blender worker did not start"


def _start_renderer(face_model: str, resolution: int, samples: int) -> None:
    global _scene_renderer, _start_error
    from multiprocessing.util import Finalize

    from render.faces.loaders import load_face_model

    try:
        r = SceneRenderer(load_face_model(face_model), resolution, samples, threads=1)
        _scene_renderer = r.__enter__()
    except Exception as e:  # noqa: BLE001 - reported with each render request instead of respawning forever
        _start_error = f"the Blender worker failed to start: {type(e).__name__}: {e}"
        return
    Finalize(_scene_renderer, _scene_renderer.__exit__, exitpriority=10)


def _render_in_worker(scenes: list[Scene]) -> np.ndarray:
    if _scene_renderer is None:
        raise RuntimeError(_start_error)
    return _scene_renderer(scenes)


class BlenderWorker:
    """One persistent Blender scene in a spawned process; ``render(scenes)`` -> (n, R, R) uint8."""

    def __init__(self, face_model: str, resolution: int, samples: int):
        self.args = (str(face_model), int(resolution), int(samples))
        self.resolution, self.samples = int(resolution), int(samples)
        self._stack = None
        self._pool = None

    def __enter__(self) -> BlenderWorker:
        from render.pool import worker_pool

        with contextlib.ExitStack() as stack:
            self._pool = stack.enter_context(worker_pool(1, _start_renderer, self.args))
            self._stack = stack.pop_all()
        self.render([Scene(0.0, 0.0, 0.0)])  # start Blender now, not at the first slider move
        return self

    def __exit__(self, *exc) -> None:
        stack, self._stack, self._pool = self._stack, None, None
        if stack is not None:  # normally the worker finishes and closes Blender; after an error it is ended
            stack.__exit__(*(exc or (None, None, None)))

    def render(self, scenes: list[Scene]) -> np.ndarray:
        import multiprocessing

        if self._pool is None:
            raise ExploreError("the Blender worker is not running")
        try:
            return self._pool.apply_async(_render_in_worker, (list(scenes),)).get(RENDER_TIMEOUT)
        except multiprocessing.TimeoutError:
            raise ExploreError(f"the Blender worker did not answer within {RENDER_TIMEOUT:g} s") from None
        except RuntimeError as e:
            raise ExploreError(str(e)) from None


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


# --- the page --------------------------------------------------------------------------------------
SHOWN_ERRORS: tuple = (ExploreError, C.CalibrationError)  # and CheckpointError, ShardError (added in build_app)


def offline() -> None:
    """Set the variables that keep Gradio and its Hugging Face client from reaching the internet."""
    for k, v in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(k, v)


def build_app(explorer: Explorer, title: str = "dcign explorer"):
    """The Gradio page (a ``gr.Blocks``) over ``explorer``; launch it with :func:`launch`."""
    offline()
    import gradio as gr

    from dcign.checkpoint import CheckpointError
    from render.shards import ShardError

    expected = (*SHOWN_ERRORS, CheckpointError, ShardError)
    gif_dir = Path(tempfile.mkdtemp(prefix="dcign-explore-"))
    atexit.register(shutil.rmtree, gif_dir, ignore_errors=True)
    lm0 = explorer.model(None)
    test_sweeps = list(explorer.test_faces.sets) if explorer.test_faces else []

    def fail(e: Exception) -> str:
        message = str(e)
        log.warning("%s", message)
        gr.Warning(message)
        return message

    # delete_cache: Gradio's copies of images, GIFs and uploads older than an hour go, hourly
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        state = gr.State(None)  # {"face": Face, "mu": {model name: code}}
        gr.Markdown(
            f"## {title}\nMove a latent: the model decodes the face (middle) and Blender renders the same face "
            "at the slider's angles (right). Angles come from the calibration fitted on the test sweeps."
        )
        error = gr.Textbox(label="Message", elem_id="explore-error", interactive=False, lines=1)
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                model_pick = gr.Dropdown(
                    list(explorer.models), value=explorer.default, label="Model", elem_id="model", interactive=True
                )
                with gr.Tab("Test image"):
                    sweep_pick = gr.Dropdown(
                        test_sweeps, value=test_sweeps[0] if test_sweeps else None, label="Test sweep"
                    )
                    index_pick = gr.Number(0, label="Image index", precision=0, minimum=0)
                    test_button = gr.Button("Show test image", elem_id="show-test", interactive=bool(test_sweeps))
                with gr.Tab("Random face"):
                    seed_pick = gr.Number(0, label="Seed", precision=0)
                    random_button = gr.Button("New random face", elem_id="random-face")
                with gr.Tab("Upload"):
                    upload = gr.File(label="A face image (PNG/JPEG; resized to the model's resolution)")
                with gr.Accordion("Another checkpoint", open=False, elem_id="another-checkpoint"):
                    ckpt_path = gr.Textbox(label="Checkpoint folder", placeholder="models/x", elem_id="checkpoint-path")
                    calib_path = gr.Textbox(label="Calibration (.npz; empty: eval/calibration/<model>.npz)")
                    load_button = gr.Button("Load", elem_id="load-checkpoint")
                face_info = gr.Markdown(elem_id="face-info")
            with gr.Column(scale=2):
                still = {"type": "numpy", "format": "png", "interactive": False}  # PNG: 4x faster to write than WebP
                with gr.Row():
                    shown_input = gr.Image(label="Face", elem_id="input-image", **still)
                    decoded = gr.Image(label="Decoded", elem_id="decoded-image", **still)
                    rendered = gr.Image(label="Blender render", elem_id="render-image", **still)
                render_label = gr.Markdown(elem_id="render-label")
                metrics = gr.Markdown(elem_id="metrics")
                factor_sliders = []
                for f in FACTORS:
                    lo, hi = lm0.calibration[f].range
                    label = slider_label(f, lm0.calibration[f])
                    slider = gr.Slider(lo, hi, (lo + hi) / 2, step=0.5, label=label, elem_id=f"{f}-slider")
                    factor_sliders.append(slider)
                r = INTRINSIC_RANGE
                intrinsic_sliders = [
                    gr.Slider(-r, r, 0.0, step=0.05, label=f"intrinsic {k}", elem_id=f"intrinsic-{k}-slider")
                    for k in range(N_INTRINSIC)
                ]
                code_text = gr.Textbox(label="Code", lines=4, interactive=False, elem_id="code")
                with gr.Row():
                    traverse_pick = gr.Dropdown(
                        list(FACTORS) + [f"z{i}" for i in lm0.intrinsic], value=FACTORS[0], label="Traverse"
                    )
                    traverse_button = gr.Button("Traverse (GIF)", elem_id="traverse")
                with gr.Row():
                    traverse_image = gr.Image(
                        label="Traversal: decoded | rendered", type="filepath", elem_id="traverse-image"
                    )
                    traverse_file = gr.File(label="Download", elem_id="traverse-file")
        sliders = factor_sliders + intrinsic_sliders

        def values(lm, raw) -> tuple[dict, dict]:
            angles = {f: float(v if v is not None else 0.0) for f, v in zip(FACTORS, raw[:3], strict=True)}
            intrinsic = {i: float(v or 0.0) for i, v in zip(lm.intrinsic, raw[3:], strict=False)}
            return angles, intrinsic

        def shown(view: View) -> tuple:
            return (
                enlarge(view.decoded),
                None if view.rendered is None else enlarge(view.rendered),
                view.render_label(),
                view.metrics_label(),
            )

        def slider_updates(lm: LoadedModel, start: dict) -> list:
            ups = []
            for f in FACTORS:
                cal = lm.calibration[f]
                lo, hi = cal.range
                ups.append(gr.Slider(lo, hi, start["angles"][f], label=slider_label(f, cal)))
            for k in range(N_INTRINSIC):
                if k < len(lm.intrinsic):
                    i = lm.intrinsic[k]
                    label = f"Intrinsic z{i} (prior std units)"
                    ups.append(gr.Slider(value=start["intrinsic"][i], label=label, visible=True))
                else:
                    ups.append(gr.Slider(visible=False))
            return ups

        face_outputs = [error, state, shown_input, face_info, *sliders, decoded, rendered, render_label, metrics]
        face_outputs += [code_text, traverse_pick]

        def show(name: str, face: Face) -> list:
            lm = explorer.model(name)
            mu = explorer.encode(name, face)
            start = explorer.start_values(name, face, mu)
            view = explorer.view(name, face, mu, start["angles"], start["intrinsic"])
            info = f"**{face.source}**"
            if face.scene is not None:
                info += f" — scene: {scene_label(face.scene)}"
            read = C.read_angles(lm.calibration, mu)
            reading = ", ".join(f"{f} {fmt_degrees(a)}" for f, a in read.items())
            info += f"\n\n{lm.name} ({lm.method}) reads it as {reading}"
            if face.note:
                info += f"\n\n{face.note}"
            new_state = {"face": face, "mu": {name: mu}}
            choices = list(FACTORS) + [f"z{i}" for i in lm.intrinsic]
            return [
                face.note or "",
                new_state,
                enlarge(face.image),
                info,
                *slider_updates(lm, start),
                *shown(view),
                explorer.code_label(name, view.code),
                gr.Dropdown(choices=choices, value=FACTORS[0]),
            ]

        def skip_face_outputs(message: str) -> list:
            return [message] + [gr.skip()] * (len(face_outputs) - 1)

        def on_start(name):
            try:
                if test_sweeps:
                    try:
                        return show(name, explorer.test_face(test_sweeps[0], 0))
                    except ExploreError as e:  # e.g. test data at another resolution: say so, show a new face
                        log.warning("%s", e)
                return show(name, explorer.random_face(0))
            except expected as e:
                return skip_face_outputs(fail(e))

        def on_test(name, sweep, index):
            try:
                return show(name, explorer.test_face(sweep, int(index or 0)))
            except expected as e:
                return skip_face_outputs(fail(e))

        def on_random(name, seed):
            try:
                return show(name, explorer.random_face(int(seed or 0)))
            except expected as e:
                return skip_face_outputs(fail(e))

        def on_upload(name, path):
            if not path:
                return skip_face_outputs("")
            try:
                return show(name, explorer.upload(path))
            except expected as e:
                return skip_face_outputs(fail(e))

        def on_model(name, st):
            if not st:
                return skip_face_outputs("")
            try:
                return show(name, st["face"])
            except expected as e:
                return skip_face_outputs(fail(e))

        def on_slide(name, st, *raw):
            if not st or name not in st["mu"]:
                return ["", gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()]
            try:
                angles, intrinsic = values(explorer.model(name), raw)
                view = explorer.view(name, st["face"], st["mu"][name], angles, intrinsic)
                return ["", *shown(view), explorer.code_label(name, view.code)]
            except expected as e:
                return [fail(e), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()]

        def on_traverse(name, st, which, *raw):
            if not st or name not in st["mu"]:
                return ["Pick a face first.", gr.skip(), gr.skip()]
            try:
                lm = explorer.model(name)
                angles, intrinsic = values(lm, raw)
                frames = explorer.traverse(name, st["face"], st["mu"][name], angles, intrinsic, which)
                path = gif_dir / f"traverse-{lm.name}-{which}-{time.strftime('%H%M%S')}.gif"
                write_gif(frames, path)
                return ["", str(path), str(path)]
            except expected as e:
                return [fail(e), gr.skip(), gr.skip()]

        def on_load(path, calib, st):
            try:
                if not (path or "").strip():
                    raise ExploreError("name a checkpoint folder to load")
                lm = load(path.strip(), (calib or "").strip() or None)
                name = explorer.add(lm)
                log.info("loaded %s (%s) as %s", path, lm.method, name)
                pick = gr.Dropdown(choices=list(explorer.models), value=name)
                loaded = f"Loaded {path} as {name}."
                if not st:
                    return [loaded] + [gr.skip()] * (len(face_outputs) - 1) + [pick]
                return [loaded, *show(name, st["face"])[1:], pick]
            except expected as e:
                return skip_face_outputs(fail(e)) + [gr.skip()]

        demo.load(on_start, [model_pick], face_outputs)
        test_button.click(on_test, [model_pick, sweep_pick, index_pick], face_outputs)
        random_button.click(on_random, [model_pick, seed_pick], face_outputs)
        upload.upload(on_upload, [model_pick, upload], face_outputs)
        model_pick.input(on_model, [model_pick, state], face_outputs)
        # Only moves by the user (.input), not the values a new face sets; the newest move wins.
        gr.on(
            [s.input for s in sliders],
            on_slide,
            [model_pick, state, *sliders],
            [error, decoded, rendered, render_label, metrics, code_text],
            trigger_mode="always_last",
            show_progress="hidden",
            api_name="move",
        )
        traverse_inputs = [model_pick, state, traverse_pick, *sliders]
        traverse_button.click(on_traverse, traverse_inputs, [error, traverse_image, traverse_file])
        load_button.click(on_load, [ckpt_path, calib_path, state], [*face_outputs, model_pick])
    return demo


def launch(demo, host: str = "127.0.0.1", port: int = 7860, quiet: bool = True) -> str:
    """Start serving in background threads (no share link, no analytics); return the local URL."""
    import gradio as gr

    system = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web fonts: the page must load offline
    theme = gr.themes.Default(font=system, font_mono=["ui-monospace", "monospace"])
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(
        server_name=host,
        server_port=int(port),
        share=False,
        prevent_thread_lock=True,
        quiet=quiet,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        footer_links=[],
        theme=theme,
    )
    return url
