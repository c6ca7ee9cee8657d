"""The inverse-graphics table of docs/results.md from the fit stage's ``eval/fit.json``.

python -m pipeline.inverse.table              # rewrite docs/results.md between <!-- fit:start/end -->
python -m pipeline.inverse.table --check      # exit 1 when the document differs from eval/fit.json
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.markers import MarkerError, replace_between
from render.atomic import atomic_write_bytes
from render.vocabulary import FACTORS

METHODS = (
    ("amortised", "amortised (encoder + calibration, 1 encoding)"),
    ("code", "code-space search (CMA-ES, DC-IGN code distance)"),
    ("pixel", "pixel-space search (CMA-ES, pixel MSE)"),
)


def table(summary: dict) -> str:
    """One row per method: median / 90th-percentile angle errors, shape recovery, re-render, cost."""
    head = (
        "| method | azimuth ° median / p90 | elevation ° | light ° | shape corr. (first k) "
        "| re-render PSNR dB / SSIM | renders | s per face |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for key, label in METHODS:
        m = summary.get(key)
        if m is None:
            continue
        angles = [f"{m[f]['median_abs_error']:.1f} / {m[f]['p90_abs_error']:.1f}" for f in FACTORS]
        shape = "–" if m.get("shape_correlation") is None else f"{m['shape_correlation']:.2f}"
        lines.append(
            f"| {label} | " + " | ".join(angles) + f" | {shape} | {m['psnr']:.2f} / {m['ssim']:.3f} "
            f"| {m['renders_per_image']:.0f} | {m['seconds_per_image']:.{1 if m['seconds_per_image'] >= 1 else 2}f} |"
        )
    note = (
        f"\n*`eval/fit.json`: {summary['images']} held-out faces at {summary['resolution']}×{summary['resolution']},"
        f" budget {summary['budget']} renders per search; errors in degrees.*\n"
    )
    return "\n".join(lines) + "\n" + note


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--metrics", default="eval/fit.json", show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--doc", default="docs/results.md", show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--check", is_flag=True, help="Change nothing; exit 1 when the document differs from the metrics.")
def main(metrics: Path, doc: Path, check: bool) -> None:
    """Write the fit table into docs/results.md from eval/fit.json."""
    try:
        summary = json.loads(metrics.read_text(encoding="utf-8"))
        text = doc.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise click.ClickException(f"{getattr(e, 'filename', None) or metrics}: {e}") from None
    try:
        new = replace_between(text, "fit", table(summary))
    except MarkerError as e:
        raise click.ClickException(f"{doc}: {e.message}") from None
    except (KeyError, TypeError) as e:
        raise click.ClickException(f"{metrics}: not a fit stage summary ({e})") from None
    if check:
        raise SystemExit(0 if new == text else 1)
    if new != text:
        atomic_write_bytes(doc, new.encode("utf-8"))
    click.echo(f"{doc}: fit table {'rewritten' if new != text else 'already up to date'}")


if __name__ == "__main__":
    main()
