"""The benchmarks write what they print, docs/benchmarks.md's tables come from those files, the GPU check runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from benchmarks import cuda_check, readme
from benchmarks.train import forward_flops, unfused_upsampling
from dcign.config import ModelConfig
from dcign.model import DCIGN

ROOT = Path(__file__).resolve().parents[1]
MARKED = "Intro.\n\n<!-- benchmarks.{0}:start -->\nold {0}\n<!-- benchmarks.{0}:end -->\n\nOutro.\n"


def benchmark(tmp_path: Path, name: str, *args: str) -> dict:
    out = tmp_path / f"{name}.json"
    r = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_train_benchmark_writes_its_figures_and_the_doc_shows_them(tmp_path):
    tiny = ["--seconds", "0.05", "--filters", "4,4", "--latent", "8", "--resolutions", "16", "--mm-size", "64"]
    record = benchmark(tmp_path, "train", *tiny, "--device", "cpu")
    assert record["benchmark"] == "train" and record["machine"]["cpu"] and record["date"]
    assert record["settings"]["filters"] == [4, 4] and record["settings"]["resolutions"] == [16]
    rows = record["results"]["rows"]
    assert [(r["resolution"], r["precision"]) for r in rows] == [(16, "fp32"), (16, "bf16")]
    assert all(r["images_per_s"] > 0 and r["train_gflop_per_image"] > 0 for r in rows)
    for r in rows:
        assert r["upsample_speedup"] == pytest.approx(r["images_per_s"] / r["images_per_s_upsample_then_conv"])
    text = readme.train_section(record, record)
    assert f"| 16 | fp32 | {rows[0]['train_gflop_per_image']:.1f} | {rows[0]['images_per_s']:.1f} |" in text
    assert f"| {rows[0]['images_per_s_upsample_then_conv']:.1f} | {rows[0]['upsample_speedup']:.2f}× |" in text
    assert "bf16/fp32 **" in text and record["date"] in text and "--filters 4,4 --latent 8" in text


def test_doc_sections_are_replaced_between_their_markers():
    text = MARKED.format("render") + MARKED.format("train")
    out = readme.replace_sections(text, {"render": "new render", "train": "new\ntrain"})
    assert "old" not in out and "new render" in out and "new\ntrain\n<!-- benchmarks.train:end -->" in out
    assert out.startswith("Intro.") and out.endswith("Outro.\n")
    with pytest.raises(readme.ReadmeError, match="benchmarks.render:start"):
        readme.replace_sections("no markers", {"render": "x"})
    # The shipped docs/benchmarks.md and README have their markers, and the text there is what the results give.
    readme.replace_sections((ROOT / "docs" / "benchmarks.md").read_text(), {"render": "x", "train": "y", "remote": "z"})
    readme.replace_sections((ROOT / "README.md").read_text(), {"remote-summary": "x"})
    r = CliRunner().invoke(readme.main, ["--doc", str(ROOT / "docs" / "benchmarks.md"), "--check"])
    assert r.exit_code == 0, r.output


def test_remote_measurement_restores_every_unchanged_stage_and_the_docs_quote_it():
    """The committed full-size run of `python -m benchmarks.remote`: a fresh clone with the remote ran no
    stage after no change or a README change and only `evaluate` after an evaluation change."""
    record = json.loads((ROOT / "benchmarks" / "results" / "remote.json").read_text())
    r = record["results"]
    stages = subprocess.run(
        [sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert sorted(r["full_repro"]["stages_run"]) == sorted(stages)  # every stage of dvc.yaml, from scratch
    assert r["nothing_changed"]["stages_run"] == [] and r["readme_changed"]["stages_run"] == []
    assert r["evaluation_code_changed"]["stages_run"] == ["evaluate"]
    assert r["evaluation_code_changed"]["seconds"] < r["full_repro"]["seconds"] / 3
    table, sentence = readme.remote_section(record), readme.remote_summary(record)
    for key in ("full_repro", "nothing_changed", "evaluation_code_changed"):
        assert readme.minutes(r[key]["seconds"]) in table and readme.minutes(r[key]["seconds"]) in sentence
    assert "| pull request, the evaluation's code alone" in table and "| `evaluate` |" in table


def test_doc_without_results_says_which_file(tmp_path):
    doc = ROOT / "docs" / "benchmarks.md"
    r = CliRunner().invoke(readme.main, ["--results", str(tmp_path), "--doc", str(doc), "--check"])
    assert r.exit_code == 1 and "render.json: no such results file" in r.output


@pytest.mark.slow
def test_render_benchmark_writes_its_figures_and_the_doc_shows_them(tmp_path):
    tiny = ["--resolution", "16", "--samples", "1", "--batches", "1", "--repeats", "1", "--naive-images", "1"]
    record = benchmark(tmp_path, "render", *tiny, "--memory-images", "2", "--sweeps", "azimuth")
    r = record["results"]
    row = r["images_per_s"]["azimuth"]
    assert row["naive"] > 0 and row["one_worker"] > 0 and row["all_workers"] > 0
    assert row["b_over_a"] == pytest.approx(row["one_worker"] / row["naive"])
    assert r["noise_psnr_db"] > 0 and r["worker_memory_mib"]["after_100"] is None  # fewer than 100 images
    text = readme.render_section(record)
    assert f"| azimuth | {row['naive']:.1f} img/s |" in text and f"**PSNR {r['noise_psnr_db']:.1f} dB**" in text


def test_cuda_check_runs_every_check(tmp_path):
    """The GPU check's own code, run on the CPU at a tiny size (against itself: it must pass)."""
    tiny = {"resolution": 16, "filters": (4, 4, 4), "latent": 8}
    result = cuda_check.run_checks("cpu", tmp_path, **tiny, throughput=tiny, seconds=0.05)
    assert result["passed"] and result["resume_bit_identical"] and result["fp32_relative_difference"] == 0
    assert result["encode_max_abs_difference"] == 0 and result["throughput"]["bf16_images_per_s"] > 0
    assert len(cuda_check.report(result)) == 6


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_check_without_cuda_says_so():
    r = CliRunner().invoke(cuda_check.main, [])
    assert r.exit_code == 1 and "no CUDA device" in r.output


def test_fit_benchmark_times_each_method_on_one_core(tiny_eval, tmp_path):
    root, _ = tiny_eval
    args = ["--params", root / "params.yaml", "--checkpoint", root / "models" / "dcign", "--faces", "2"]
    args += ["--calibration", root / "eval" / "calibration" / "dcign.npz"]
    rec = benchmark(tmp_path, "fit", *map(str, args))
    assert rec["benchmark"] == "fit" and rec["settings"]["torch_threads"] == 1 and rec["settings"]["faces"] == 2
    per_face = rec["results"]["seconds"]
    assert set(per_face) == {"amortised", "code", "pixel"} and all(len(v) == 2 for v in per_face.values())
    assert rec["results"]["seconds_per_face"]["code"] == pytest.approx(sum(per_face["code"]) / 2)


def test_the_unfused_reference_computes_what_the_fused_decoder_does():
    torch.manual_seed(0)
    model = DCIGN(ModelConfig(resolution=16, filters=(4, 4), latent=8)).eval()
    z = torch.randn(3, 8)
    fused = model.decode(z)
    with unfused_upsampling():
        unfused = model.decode(z)
        unfused_flops = forward_flops(model, 16)
    torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=1e-6)
    assert forward_flops(model, 16) < unfused_flops  # and the fused layer does less work
