"""One params reader for every stage: the shipped files are valid, and the dataclass defaults equal params.yaml."""

from __future__ import annotations

import ast
from dataclasses import asdict, fields
from pathlib import Path

import pytest

from dcign.config import MODEL_PARAMS, TRAIN_PARAMS, ModelConfig, TrainConfig, default_params, load_config
from pipeline.evaluation.evaluate import config_from_params
from pipeline.evaluation.scoring import EvalConfig
from render.job import GRID_KEYS, RECOGNITION_KEYS, TEST_SEED_OFFSET, RenderJob, job_from_params
from render.params import ParamsError, get, load_params
from render.sweeps import SweepConfig
from render.vocabulary import FACTORS, SWEEPS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("render", "dcign", "pipeline", "benchmarks")  # in data-flow order; benchmarks may use them all


@pytest.mark.parametrize("name", ["params.yaml", "params-paper.yaml"])
def test_params_file_is_valid_for_every_stage(name):
    p = load_params(ROOT / name)
    for split in ("train", "test"):
        for sweep in ("azimuth", "elevation", "light", "intrinsic"):
            job = job_from_params(p, sweep, split)
            job.validate()
            assert job.sweep in SWEEPS and job.n_batches > 0
    grid = job_from_params(p, "grid", "test")
    assert grid.sweep_cfg.batch_size == grid.sweep_cfg.grid[1]
    recog = job_from_params(p, "recognition", "test")
    assert recog.sweep_cfg.batch_size == recog.sweep_cfg.recognition[1] and recog.n_batches >= 4
    cfg = load_config(ROOT / name)
    assert cfg.steps > 0 and cfg.method == "dcign" and not cfg.entangled
    assert config_from_params(p).encode_batch > 0


def test_paper_profile_is_paper_scale():
    p = load_params(ROOT / "params-paper.yaml")
    assert p["render"]["resolution"] == 150 and p["render"]["batch_size"] == 20
    assert 11_000 <= sum(p["render"]["train_batches"].values()) <= 13_000
    assert p["train"]["latent"] == 200 and p["train"]["filters"] == [96, 64, 32]


# --- one source of defaults: a change to params.yaml must be made to the dataclasses too ----------------
@pytest.fixture(scope="module")
def shipped() -> dict:
    return load_params(ROOT / "params.yaml")


def test_render_defaults_equal_params_yaml(shipped):
    job, sweep = RenderJob(sweep="azimuth", n_batches=1), SweepConfig()
    for name in ("resolution", "samples", "batches_per_shard", "model", "colour", "device"):
        assert getattr(job, name) == get(shipped, f"render.{name}"), f"RenderJob.{name} != render.{name}"
    assert job.seed == shipped["seed"]
    assert TEST_SEED_OFFSET == get(shipped, "render.test_seed_offset")
    assert sweep.batch_size == get(shipped, "render.batch_size")
    assert sweep.fixed_fraction == get(shipped, "render.fixed_fraction")
    assert {f: list(sweep.ranges[f]) for f in FACTORS} == get(shipped, "render.ranges")
    assert list(sweep.grid) == [get(shipped, f"evaluate.grid.{k}") for k in GRID_KEYS]
    assert list(sweep.recognition) == [get(shipped, f"evaluate.recognition.{k}") for k in RECOGNITION_KEYS]


def test_a_job_without_params_is_the_job_with_the_shipped_params(shipped):
    for split in ("train", "test"):
        for sweep in ("azimuth", "grid", "recognition"):
            n = None if sweep != "azimuth" else 7
            assert job_from_params(None, sweep, split, n) == job_from_params(shipped, sweep, split, n)


def test_train_defaults_equal_params_yaml(shipped):
    assert default_params() == {"seed": shipped["seed"], "train": shipped["train"]}
    assert set(shipped["train"]) == {*TRAIN_PARAMS, *MODEL_PARAMS}
    loaded = load_config(ROOT / "params.yaml")
    assert loaded.model == ModelConfig(resolution=loaded.model.resolution)
    assert loaded == TrainConfig(model=loaded.model)


def test_evaluate_defaults_equal_params_yaml(shipped):
    assert config_from_params(shipped) == EvalConfig()
    assert {f.name for f in fields(EvalConfig)} - {"seed"} <= set(shipped["evaluate"])
    assert asdict(EvalConfig())["seed"] == shipped["seed"]


# --- the reader ---------------------------------------------------------------------------------------
def test_reader_errors_name_the_file_and_the_key(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("seed: 0\nrender:\n  samples: -2\n  colour: blue\n")
    p = load_params(path)
    with pytest.raises(ParamsError, match=f"{path}: render.samples must be positive, got -2"):
        get(p, "render.samples", int, positive=True)
    with pytest.raises(ParamsError, match=f"{path}: render.colour must be one of grey, rgb, got 'blue'"):
        get(p, "render.colour", str, choices=("grey", "rgb"))
    with pytest.raises(ParamsError, match=f"{path}: render.resolution is missing"):
        get(p, "render.resolution", int)
    assert get(p, "render.resolution", int, default=64) == 64
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "none.yaml")
    path.write_text("- a list\n")
    with pytest.raises(ParamsError, match="expected a mapping"):
        load_params(path)


# --- data flows one way: render -> dcign -> pipeline ----------------------------------------------------
def test_no_package_imports_a_later_stage_or_a_private_name_of_another_module():
    for i, package in enumerate(PACKAGES):
        later = PACKAGES[i + 1 :]
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [(a.name, a.name) for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [(node.module, a.name) for a in node.names]
                else:
                    continue
                for source, name in names:
                    top = source.split(".")[0]
                    assert top not in later, f"{module} imports {source} (a later stage)"
                    if top in PACKAGES and source != module:
                        assert not name.startswith("_"), f"{module} imports the private {source}.{name}"


# --- pipeline's rooms: each job imports only the rooms it builds on --------------------------------------
ROOMS = {  # subpackage of pipeline -> the other subpackages it may import
    "metrics": set(),  # pure functions of codes, factors and images
    "evaluation": {"metrics"},  # the evaluate stage runs alone: it never imports inverse graphics or the explorer
    "inverse": {"evaluation", "metrics"},  # the calibration, the encoder, the image metrics
    "explorer": {"evaluation", "metrics"},
    "study": {"evaluation", "metrics"},  # PCA's PSNR; the study reads records and evaluations, it never trains
    "review": {"evaluation", "study"},  # the study's record: its headline figures and seed groups
}
NEVER_TRAINS = ("dcign", "torch")  # what the study must not import


def _imported(path: Path) -> list[str]:
    """Modules a file imports (lazy imports in functions too); relative imports resolved within pipeline."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = [node.module] if node.module else []
            anchor = list(package[: len(package) - node.level + 1]) if node.level else []
            source = ".".join(anchor + base)
            out += [source] + [f"{source}.{a.name}" for a in node.names]
    return out


def test_each_room_of_pipeline_imports_only_the_rooms_it_builds_on():
    assert {p.name for p in (ROOT / "pipeline").iterdir() if (p / "__init__.py").is_file()} == set(ROOMS)
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        parts = path.relative_to(ROOT / "pipeline").parts
        room = parts[0] if len(parts) > 1 else None  # None: a module every room may share (images, markers)
        for source in _imported(path):
            top, *rest = source.split(".")
            other = rest[0] if top == "pipeline" and rest else None
            if other in ROOMS and other != room:
                assert other in ROOMS.get(room, ()), f"pipeline/{'/'.join(parts)} imports {source}"
            if room == "study":
                assert top not in NEVER_TRAINS, f"pipeline/{'/'.join(parts)} imports {source}: the study never trains"
