"""A render job: everything that determines a sweep's bytes, built from the command line and params.yaml.

:func:`job_from_params` is the one place where the three sources of a value meet: the command
line wins, then params.yaml (its ``render`` and ``evaluate`` sections), then the dataclass
defaults, which equal the shipped params.yaml (``tests/test_params.py`` checks that they do).
:func:`job_config` is the record of a job that every manifest and sidecar holds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from render.params import get, get_range
from render.shards import FORMAT, MAX_SHARDS
from render.sweeps import SweepConfig, grid_batches
from render.vocabulary import ALL_SWEEPS, FACTORS, GRID, RECOGNITION

COLOURS = ("grey", "rgb")
DEVICES = ("cpu", "cuda", "optix")
SPLITS = ("train", "test")
TEST_SEED_OFFSET = 1000  # the test split's seed is the seed plus this (render.test_seed_offset)
GRID_KEYS = ("identities", "azimuths", "elevations", "lights")  # evaluate.grid, in SweepConfig.grid order
RECOGNITION_KEYS = ("identities", "azimuths")  # evaluate.recognition
# Sweeps other than the grid have always recorded these grid sizes in their manifests, though the
# grid shapes none of their bytes; recording them unchanged keeps directories rendered before resumable.
RECORDED_GRID = [10, 9, 5, 5]


# Upper bounds of the numeric settings, each with the reason a larger value is refused. They are
# checked before any work, so a typo (an extra zero or three) is one line, not a hang or a crash.
MAX_RESOLUTION = 4096  # Blender holds a float RGBA buffer of 16 R^2 bytes per image (256 MiB here)
MAX_SAMPLES = 65536  # Cycles samples per pixel; the default 4 is already PSNR 37 dB against 512
MAX_SHARD_BYTES = 2 << 30  # a shard's images are held in memory while it renders and is written
MAX_SEED = 2**63 - 1  # numpy's seed sequences take non-negative integers; this is any 64-bit seed


def bound_problem(name: str, value, maximum: int, reason: str, minimum: int = 1) -> str | None:
    """Why ``value`` is not an integer in [minimum, maximum] (None when it is), with ``reason`` for the maximum."""
    if not isinstance(value, int) or isinstance(value, bool):
        return f"{name} must be an integer, got {value!r:.40}"
    if value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        return f"{name} must be {kind}, got {value}"
    if value > maximum:
        return f"{name} must be at most {maximum} ({reason}), got {value}"
    return None


@dataclass(frozen=True)
class RenderJob:
    """Everything that determines a sweep's bytes (and nothing that doesn't, like worker counts)."""

    sweep: str  # one of ALL_SWEEPS (the six training sweeps, the evaluation grid or the recognition set)
    n_batches: int  # render batches in this sweep
    seed: int = 0  # drives every random draw
    resolution: int = 64  # square image side, pixels
    samples: int = 4  # Cycles samples per pixel (4: PSNR 37 dB against 512 at 64x64)
    batches_per_shard: int = 20  # batches stored per shard file
    model: str = "default"  # face model: "default" (procedural) or a path
    colour: str = "grey"  # grey (paper) or rgb
    device: str = "cpu"  # Cycles device: cpu, cuda, optix
    sweep_cfg: SweepConfig = field(default_factory=SweepConfig)

    def validate(self) -> None:
        if self.sweep not in ALL_SWEEPS:
            raise ValueError(f"--sweep: unknown sweep {self.sweep!r}; choose one of {', '.join(ALL_SWEEPS)}")
        for problem in self.bound_problems():
            raise ValueError(problem)
        if self.colour not in COLOURS:
            raise ValueError(f"colour must be one of {', '.join(COLOURS)}, got {self.colour!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        self.sweep_cfg.validate()
        if self.sweep == GRID and self.n_batches != grid_batches(self.sweep_cfg):
            raise ValueError(f"the grid has {grid_batches(self.sweep_cfg)} batches, got batches={self.n_batches}")
        if self.sweep == RECOGNITION and self.n_batches != int(self.sweep_cfg.recognition[0]):
            n = int(self.sweep_cfg.recognition[0])
            raise ValueError(f"the recognition set has {n} batches (one per identity), got batches={self.n_batches}")

    def bound_problems(self) -> list[str]:
        """Every numeric setting outside its bounds, as messages (see MAX_*)."""
        images = self.resolution * self.resolution * (3 if self.colour == "rgb" else 1)
        checks = [
            bound_problem("seed", self.seed, MAX_SEED, "a 64-bit seed", minimum=0),
            bound_problem("resolution", self.resolution, MAX_RESOLUTION, "Blender's float buffer is 16 R^2 bytes"),
            bound_problem("samples", self.samples, MAX_SAMPLES, "the default 4 is already PSNR 37 dB against 512"),
            bound_problem("batches_per_shard", self.batches_per_shard, MAX_SHARDS, "the shard names have 5 digits"),
        ]
        problems = [p for p in checks if p]
        if problems:
            return problems
        max_batch = MAX_SHARD_BYTES // images
        problem = bound_problem("batch_size", self.sweep_cfg.batch_size, max_batch, "a batch is held in memory")
        if problem:
            return [f"{problem} at resolution {self.resolution}"]
        per_shard = MAX_SHARD_BYTES // (images * self.sweep_cfg.batch_size)
        reason = f"a shard of {MAX_SHARD_BYTES >> 30} GiB at most is held in memory while it is written"
        problem = bound_problem("batches_per_shard", self.batches_per_shard, per_shard, reason)
        if problem:
            return [f"{problem} at this batch size and resolution"]
        max_batches = MAX_SHARDS * self.batches_per_shard
        reason = f"{MAX_SHARDS} shards of {self.batches_per_shard} batches: shard names have 5 digits"
        problem = bound_problem("batches", self.n_batches, max_batches, reason)
        return [problem] if problem else []

    @property
    def n_shards(self) -> int:
        return -(-self.n_batches // self.batches_per_shard)

    def shard_batches(self, k: int) -> range:
        return range(k * self.batches_per_shard, min((k + 1) * self.batches_per_shard, self.n_batches))


def job_from_params(
    params: dict | None, sweep: str, split: str = "train", n_batches: int | None = None, **options
) -> RenderJob:
    """The job that renders ``sweep`` of ``split``.

    Each value comes from ``options`` (the command line: ``seed``, ``resolution``, ``samples``,
    ``batch_size``, ``batches_per_shard``, ``model``, ``colour``, ``device``) when it is not None,
    else from ``params`` (a :func:`render.params.load_params` mapping, or None), else from the
    dataclass defaults. The test split's seed is offset by ``render.test_seed_offset`` unless the
    seed is given. ``n_batches`` defaults to ``render.<split>_batches.<sweep>``; the grid's and the
    recognition set's sizes (and so their batches) come from ``evaluate.grid`` / ``evaluate.recognition``.
    Raises :class:`render.params.ParamsError` naming the file and the key of a bad entry.
    """
    p = params or {}
    job_defaults, sweep_defaults = RenderJob(sweep=sweep, n_batches=1), SweepConfig()

    def value(name: str, dotted: str, kind: type, default, **checks):
        given = options.get(name)
        return given if given is not None else get(p, dotted, kind, default=default, **checks)

    seed = options.get("seed")
    if seed is None:
        seed = get(p, "seed", int, default=job_defaults.seed)
        if split == "test":
            seed += get(p, "render.test_seed_offset", int, default=TEST_SEED_OFFSET, positive=True)
    resolution = value("resolution", "render.resolution", int, job_defaults.resolution, positive=True)
    samples = value("samples", "render.samples", int, job_defaults.samples, positive=True)
    per_shard = value(
        "batches_per_shard", "render.batches_per_shard", int, job_defaults.batches_per_shard, positive=True
    )
    model = str(value("model", "render.model", str, job_defaults.model))
    colour = value("colour", "render.colour", str, job_defaults.colour, choices=COLOURS)
    device = value("device", "render.device", str, job_defaults.device, choices=DEVICES)
    ranges = {f: get_range(p, f"render.ranges.{f}", default=sweep_defaults.ranges[f]) for f in FACTORS}
    fixed_fraction = get(p, "render.fixed_fraction", float, default=sweep_defaults.fixed_fraction)
    grid, recognition = sweep_defaults.grid, sweep_defaults.recognition
    if sweep == GRID:  # one batch holds every azimuth of one (face, elevation, light)
        grid = tuple(
            get(p, f"evaluate.grid.{k}", int, default=d, positive=True) for k, d in zip(GRID_KEYS, grid, strict=True)
        )
        batch_size = grid[1]
    elif sweep == RECOGNITION:  # one batch holds one face at every recognition azimuth
        recognition = tuple(
            get(p, f"evaluate.recognition.{k}", int, default=d, positive=True)
            for k, d in zip(RECOGNITION_KEYS, recognition, strict=True)
        )
        batch_size = recognition[1]
    else:
        batch_size = value("batch_size", "render.batch_size", int, sweep_defaults.batch_size, positive=True)
    sweep_cfg = SweepConfig(
        batch_size=batch_size, ranges=ranges, fixed_fraction=fixed_fraction, grid=grid, recognition=recognition
    )
    if n_batches is None:
        if sweep == GRID:
            n_batches = grid_batches(sweep_cfg)
        elif sweep == RECOGNITION:
            n_batches = recognition[0]
        else:
            n_batches = get(p, f"render.{split}_batches.{sweep}", int, positive=True)
    return RenderJob(
        sweep=sweep,
        n_batches=n_batches,
        seed=seed,
        resolution=resolution,
        samples=samples,
        batches_per_shard=per_shard,
        model=model,
        colour=colour,
        device=device,
        sweep_cfg=sweep_cfg,
    )


def model_fingerprint(model) -> str:
    """SHA-256 over the arrays that shape the images, so a different face model never mixes in."""
    h = hashlib.sha256()
    for arr in (
        model.shape_mean,
        model.shape_basis,
        model.shape_std,
        model.albedo_mean,
        model.albedo_basis,
        model.albedo_std,
        model.triangles,
    ):
        h.update(np.ascontiguousarray(arr).tobytes())
    for verts, cols in model.identities or []:
        h.update(np.ascontiguousarray(verts).tobytes())
        h.update(np.ascontiguousarray(cols).tobytes())
    return h.hexdigest()


def job_config(job: RenderJob, fingerprint: str) -> dict:
    """The job as its manifest records it: every parameter that shapes the bytes, and the model's hash."""
    cfg = asdict(job)
    cfg["sweep_cfg"]["ranges"] = {k: list(map(float, v)) for k, v in job.sweep_cfg.ranges.items()}
    if job.sweep != GRID:
        cfg["sweep_cfg"]["grid"] = list(RECORDED_GRID)
    if job.sweep != RECOGNITION:  # its sizes shape no other sweep's bytes
        del cfg["sweep_cfg"]["recognition"]
    cfg["model_sha256"] = fingerprint
    cfg["format"] = FORMAT
    return json.loads(json.dumps(cfg))  # as it reads back from disk (tuples become lists)
