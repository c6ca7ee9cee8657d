"""The benchmark tables of docs/benchmarks.md and README's sentence on reviewing with the remote,
written from the JSON files the benchmarks write.

    python -m benchmarks.readme [--results benchmarks/results] [--doc docs/benchmarks.md] [--readme README.md] [--check]

Reads ``render.json`` (``python -m benchmarks.render --json``), ``train.json`` (``python -m
benchmarks.train --json``, the paper-size network), when present ``train-default.json`` (the
default profile's network), and ``remote.json`` (``python -m benchmarks.remote --json``), and
replaces the text between each document's markers ``<!-- benchmarks.<name>:start -->`` /
``<!-- benchmarks.<name>:end -->`` (``render``, ``train`` and ``remote`` in the doc,
``remote-summary`` in README) with the tables and the sentences around them. ``--check`` changes
nothing and exits with status 1 when a document is not what the JSON files give. ``make bench``
measures the render, train and explorer figures and then runs this.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from benchmarks.remote import EVAL_CODE
from render.atomic import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
README = ROOT / "README.md"
SWEEP_LABELS = {
    "shape": "shape (new mesh per image)",
    "texture": "texture (new colours per image)",
    "intrinsic": "intrinsic (both)",
}
TARGETS = {"b_over_a": 3.0, "c_over_b": 1.7, "fp32_of_peak": 0.70, "bf16_over_fp32": 1.5}


class ReadmeError(click.ClickException):
    """A missing or unreadable results file, or a document without the markers."""


def machine(record: dict) -> str:
    m = record["machine"]
    memory = f", {m['memory_gib']:.0f} GiB" if m.get("memory_gib") else ""
    return f"{m['cpu']}, {m['cores']} cores{memory}"


def _bold_min(values: list[float]) -> list[str]:
    low = min(values)
    return [f"**{v:.2f}×**" if v == low else f"{v:.2f}×" for v in values]


def render_section(record: dict) -> str:
    s, r = record["settings"], record["results"]
    rows = r["images_per_s"]
    sweeps = list(rows)
    b_over_a = _bold_min([rows[k]["b_over_a"] for k in sweeps])
    c_over_b = _bold_min([rows[k]["c_over_b"] for k in sweeps])
    lines = [
        f"**Rendering** — `python -m benchmarks.render` on {machine(record)}, {record['date']} "
        f"({s['resolution']}×{s['resolution']}, {s['samples']} samples, batches of {s['batch_size']}; each variant "
        f"renders {s['batches']} batches, {s['repeats']} interleaved tries; (b) and (c) are steady-state rates from "
        f"the first shard started to the last one finished, the pool's start-up of {r['pool_startup_s']:.1f} s being "
        "paid once per run; the table shows the fastest try, the last column the ratio of the median tries):",
        "",
        "| sweep | (a) naive: rebuild scene + PNG file per image, 1 core | (b) dcign, 1 worker, 1 core "
        f"| (c) dcign, default ({s['workers']} workers) | b/a | c/b | c/b, medians |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, k in enumerate(sweeps):
        unit = " img/s" if i == 0 else ""
        row = rows[k]
        lines.append(
            f"| {SWEEP_LABELS.get(k, k)} | {row['naive']:.1f}{unit} | {row['one_worker']:.1f}{unit} "
            f"| {row['all_workers']:.1f}{unit} | {b_over_a[i]} | {c_over_b[i]} | {row['c_over_b_medians']:.2f}× |"
        )
    missed = [
        k for k in sweeps if rows[k]["b_over_a"] < TARGETS["b_over_a"] or rows[k]["c_over_b"] < TARGETS["c_over_b"]
    ]
    verdict = "both met for every sweep type" if not missed else f"not met for {', '.join(missed)}"
    memory = r["worker_memory_mib"]
    after_100 = f"{memory['after_100']:.0f} MiB after 100 images, " if memory["after_100"] is not None else ""
    lines += [
        "",
        f"Targets: b/a ≥ {TARGETS['b_over_a']:g}× and c/b ≥ {TARGETS['c_over_b']:g}×, {verdict}. Noise at "
        f"{s['samples']} samples against a {r['reference_samples']}-sample reference of the same view: "
        f"**PSNR {r['noise_psnr_db']:.1f} dB** (target ≥ 30; no denoiser). Memory of a worker that changes the face "
        f"every image: **{after_100}{memory['after_n']:.0f} MiB after {memory['n']:,}** (the pool also restarts "
        "workers every ~2,000 images).",
    ]
    return "\n".join(lines)


def train_section(record: dict, default: dict | None) -> str:
    s, r = record["settings"], record["results"]
    peak, gemm = r["matmul_peak_gflop_per_s"], r["gemm_gflop_per_s"]
    command = f"python -m benchmarks.train --seconds {s['seconds']:g}"
    network = f"filters {', '.join(map(str, s['filters']))}, {s['latent']} latents, batch {s['batch']}"
    lines = [
        f"**Training** — `{command}` on {machine(record)}, {record['date']}, {record['device']} ({network}, the real "
        "training step with clamping and Adam). The fp32 peak is the faster of torch.mm "
        f"({gemm['fp32']['torch.mm']:.0f} GFLOP/s) and the same GEMM as a 1×1 convolution "
        f"({gemm['fp32']['conv1x1']:.0f} GFLOP/s); the bf16 GEMM peak is {peak.get('bf16', float('nan')):.0f} GFLOP/s.",
        "",
        "| resolution | precision | GFLOP/image (train) | images/s | GFLOP/s | of fp32 peak "
        "| images/s, upsample then conv | fused speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    missed = []
    for row in r["rows"]:
        res = row["resolution"]
        if row["precision"] == "fp32":
            last = f"**{100 * row['fraction_of_fp32_peak']:.1f}%**"
            if row["fraction_of_fp32_peak"] < TARGETS["fp32_of_peak"]:
                missed.append(f"fp32 at {res}: {100 * row['fraction_of_fp32_peak']:.1f}% of the peak")
        else:
            speedup = r["bf16_over_fp32"].get(str(res))
            last = f"bf16/fp32 **{speedup:.2f}×**" if speedup else f"{100 * row['fraction_of_fp32_peak']:.1f}%"
            if speedup is not None and speedup < TARGETS["bf16_over_fp32"]:
                missed.append(f"bf16 at {res}: {speedup:.2f}× fp32")
        lines.append(
            f"| {res} | {row['precision']} | {row['train_gflop_per_image']:.1f} | {row['images_per_s']:.1f} "
            f"| {row['gflop_per_s']:.0f} | {last} | {row['images_per_s_upsample_then_conv']:.1f} "
            f"| {row['upsample_speedup']:.2f}× |"
        )
    verdict = "are met at every resolution" if not missed else f"are missed by {'; '.join(missed)}"
    lines += [
        "",
        "The decoder runs each nearest-neighbour upsampling and the 7×7 conv after it as one stride-2 "
        "transposed convolution (`UpsampleConv2d`, the same function): GFLOP/image counts what runs; the "
        "last two columns time the same step with the upsampling then the 7×7 conv, side by side.",
        "",
        f"Targets (fp32 ≥ 70% of the matmul peak, bf16 ≥ 1.5× fp32) {verdict}.",
    ]
    if default is not None:
        d = default["settings"]
        rates = {(row["resolution"], row["precision"]): row["images_per_s"] for row in default["results"]["rows"]}
        res = max(row[0] for row in rates)
        flags = f"--filters {','.join(map(str, d['filters']))} --latent {d['latent']} --resolutions {res}"
        fused = {(row["resolution"], row["precision"]): row["upsample_speedup"] for row in default["results"]["rows"]}
        per_precision = " and ".join(
            f"{rates[(res, p)]:.0f} img/s {p} ({fused[(res, p)]:.2f}× the unfused upsampling)"
            for p in d["precisions"]
            if (res, p) in rates
        )
        lines[-1] += (
            f" The default profile's network ({', '.join(map(str, d['filters']))}; {d['latent']} latents) trains at "
            f"{per_precision} at {res}×{res} (`python -m benchmarks.train {flags}`, {default['date']})."
        )
    return "\n".join(lines)


def minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def _ran(step: dict) -> str:
    ran = step["stages_run"]
    return "nothing" if not ran else ", ".join(f"`{s}`" for s in ran) if len(ran) <= 3 else f"all {len(ran)} stages"


REMOTE_ROWS = {
    "nothing_changed": "nothing changed",
    "evaluation_code_changed": f"the evaluation's code alone (`{EVAL_CODE}`)",
    "readme_changed": "README alone",
}


def remote_section(record: dict) -> str:
    """docs/benchmarks.md: the full repro and each pull request's `dvc repro --pull`, with what ran."""
    r, s = record["results"], record["settings"]
    full = r["full_repro"]
    lines = [
        f"**Reviewing with the remote** — `python -m benchmarks.remote` on {machine(record)}, {record['date']} "
        f"(commit {s['commit'][:7]}, `{s['params']}`; fresh clones beside a local-path remote, no DVC cache):",
        "",
        "| step | wall time | stages run |",
        "|---|---|---|",
        f"| main: `dvc repro` | {minutes(full['seconds'])} | {_ran(full)} |",
        f"| main: `dvc push --run-cache` | {minutes(r['push']['seconds'])} | – |",
    ]
    for key, label in REMOTE_ROWS.items():
        lines.append(f"| pull request, {label}: `dvc repro --pull` | {minutes(r[key]['seconds'])} | {_ran(r[key])} |")
    return "\n".join(lines)


def remote_summary(record: dict) -> str:
    """README: one sentence with the same figures."""
    r = record["results"]
    return (
        f"With the remote, a pull request's `dvc repro --pull` took {minutes(r['nothing_changed']['seconds'])} with "
        f"nothing changed and {minutes(r['evaluation_code_changed']['seconds'])} after a change to the evaluation "
        f"(which re-runs `evaluate` alone), against {minutes(r['full_repro']['seconds'])} for the full `dvc repro` "
        f"(`python -m benchmarks.remote`, {machine(record)}, {record['date']})."
    )


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ReadmeError(f"{path}: no such results file; run the benchmark with --json {path}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ReadmeError(f"{path}: unreadable results file ({e})") from None


def sections(results: Path) -> dict[str, str]:
    default = results / "train-default.json"
    return {
        "render": render_section(_load(results / "render.json")),
        "train": train_section(_load(results / "train.json"), _load(default) if default.exists() else None),
        "remote": remote_section(_load(results / "remote.json")),
    }


def readme_sections(results: Path) -> dict[str, str]:
    return {"remote-summary": remote_summary(_load(results / "remote.json"))}


def replace_sections(text: str, new: dict[str, str]) -> str:
    for name, body in new.items():
        pattern = re.compile(rf"(<!-- benchmarks\.{name}:start -->\n).*?(\n<!-- benchmarks\.{name}:end -->)", re.S)
        if not pattern.search(text):
            raise ReadmeError(
                f"the document has no <!-- benchmarks.{name}:start --> ... <!-- benchmarks.{name}:end --> markers"
            )
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), text)
    return text


@click.command()
@click.option("--results", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True)
@click.option("--doc", type=click.Path(dir_okay=False, path_type=Path), default=DOC, show_default=True)
@click.option("--readme", type=click.Path(dir_okay=False, path_type=Path), default=README, show_default=True)
@click.option("--check", is_flag=True, help="Change nothing; exit 1 when a document differs from the results.")
def main(results: Path, doc: Path, readme: Path, check: bool) -> None:
    """Write the benchmark tables of docs/benchmarks.md (and README's sentence) from the benchmarks' JSON results."""
    stale = []
    for path, new in ((doc, sections(results)), (readme, readme_sections(results))):
        text = path.read_text()
        try:
            updated = replace_sections(text, new)
        except ReadmeError as e:
            raise ReadmeError(f"{path}: {e.message}") from None
        if updated == text:
            continue
        stale.append(path)
        if not check:
            atomic_write_bytes(path, updated.encode())
    if check:
        sys.exit(1 if stale else 0)
    for path in (doc, readme):
        click.echo(f"{path}: benchmark figures {'rewritten' if path in stale else 'already up to date'}")


if __name__ == "__main__":
    main()
