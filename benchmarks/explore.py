"""How long the explorer takes to answer a slider move: decode + Blender render (+ PSNR/SSIM).

    python -m benchmarks.explore [--checkpoint models/dcign] [--test-data data/test] [--moves 40] [--json FILE]

(a) in this process: :meth:`pipeline.explorer.explorer.Explorer.view` for ``--moves`` azimuth values across
    the calibrated range (each a new angle, so every render is a new one), timed per part: the
    decoder, the Blender worker's render (a round trip to the worker process), and the whole view.
(b) in the browser (``--browser``, needs Debian's chromium and chromium-driver): the page served on
    a local port; the azimuth slider moved by ``--steps`` key presses at a time, each move waiting for
    its answer, timed inside the page from just before the key press until the Blender label shows the
    new angle (Gradio's queue, the HTTP round trip and the page's update included).

Medians and 90th percentiles in milliseconds; the machine's load average is recorded before and
after, since a busy machine only ever slows the figures.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
import numpy as np

from benchmarks import record
from pipeline.explorer import explorer as E
from pipeline.explorer.page import build_app, launch

# Records performance.now() whenever the Blender label's text changes.
OBSERVE = """
window.__labels = [];
const el = document.getElementById('render-label');
new MutationObserver(() => window.__labels.push([performance.now(), el.innerText]))
    .observe(el, {subtree: true, childList: true, characterData: true});
"""


def summary(ms: list[float]) -> dict:
    a = np.asarray(ms, np.float64)
    return {
        "n": int(a.size),
        "median_ms": float(np.median(a)),
        "p90_ms": float(np.percentile(a, 90)),
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
    }


def in_process(explorer: E.Explorer, face: E.Face, moves: int) -> dict:
    name = explorer.default
    mu = explorer.encode(name, face)
    start = explorer.start_values(name, face, mu)
    lo, hi = explorer.model(name).calibration["azimuth"].range
    explorer.view(name, face, mu, start["angles"], start["intrinsic"])  # warm: first decode and render
    parts: dict[str, list[float]] = {"decode": [], "render": [], "view": []}
    for a in np.linspace(lo, hi, moves):
        t0 = time.perf_counter()
        v = explorer.view(name, face, mu, {**start["angles"], "azimuth": float(a)}, start["intrinsic"])
        parts["view"].append(1000 * (time.perf_counter() - t0))
        for k in ("decode", "render"):
            parts[k].append(1000 * v.seconds[k])
    return {k: summary(v) for k, v in parts.items()}


def in_browser(explorer: E.Explorer, moves: int, steps: int) -> dict:
    from selenium.webdriver.common.keys import Keys

    from pipeline.explorer.browser import Page, chrome, free_port

    demo = build_app(explorer)
    url = launch(demo, port=free_port())
    answers = []
    try:
        with chrome() as driver:
            page = Page(driver, url).open()
            page.press("azimuth", Keys.HOME)
            page.wait_text("render-label", "azimuth -90.0°")
            driver.execute_script(OBSERVE)
            for i in range(moves):
                key = Keys.ARROW_RIGHT if (i * steps // 300) % 2 == 0 else Keys.ARROW_LEFT  # back and forth in range
                seen = driver.execute_script("return window.__labels.length")
                t0 = driver.execute_script("return performance.now()")
                page.press("azimuth", key, steps)
                want = f"azimuth {page.slider_value('azimuth'):.1f}°"
                page.wait(
                    lambda want=want, seen=seen: any(
                        want in t for _, t in driver.execute_script("return window.__labels")[seen:]
                    ),
                    f"the answer to move {i}",
                )
                labels = driver.execute_script("return window.__labels")[seen:]
                answers.append(next(t for t, text in labels if want in text) - t0)
    finally:
        demo.close()
    return {"answer": summary(answers), "steps_per_move": steps}


@click.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), default=Path("models/dcign"), show_default=True)
@click.option("--test-data", type=click.Path(file_okay=False, path_type=Path), default=Path("data/test"))
@click.option("--moves", type=click.IntRange(2, 1000), default=40, show_default=True, help="Slider moves per part.")
@click.option("--steps", type=click.IntRange(1, 100), default=1, show_default=True, help="Key presses per move.")
@click.option("--browser/--no-browser", default=True, help="Also time the answers in headless Chromium.")
@click.option("--note", default="", help="What else the machine was doing, recorded with the figures.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False), help="Also write every figure.")
def main(checkpoint, test_data, moves, steps, browser, note, json_path):
    import torch

    torch.set_num_threads(1)  # as dcign-explore
    load_before = os.getloadavg()
    with E.opened(checkpoint, None, None, None, test_data) as explorer:
        face = explorer.test_face("azimuth", 0)
        lm = explorer.model(None)
        click.echo(f"{lm.name} ({lm.method}, {lm.resolution}x{lm.resolution}), {face.source}, {moves} moves")
        results = {"in_process": in_process(explorer, face, moves)}
        for k, s in results["in_process"].items():
            click.echo(f"  in process, {k:>6}: median {s['median_ms']:6.1f} ms, p90 {s['p90_ms']:6.1f} ms")
        if browser:
            from pipeline.explorer.browser import missing_browser

            reason = missing_browser()
            if reason:
                raise click.ClickException(f"--browser: {reason}")
            results["browser"] = in_browser(explorer, moves, steps)
            s = results["browser"]["answer"]
            click.echo(f"  in the browser, answer: median {s['median_ms']:6.1f} ms, p90 {s['p90_ms']:6.1f} ms")
        samples = explorer.renderer.samples
    load_after = os.getloadavg()
    click.echo(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    if json_path:
        settings = {
            "checkpoint": str(checkpoint),
            "resolution": lm.resolution,
            "samples": samples,
            "moves": moves,
            "steps_per_move": steps,
            "torch_threads": torch.get_num_threads(),
            "render_threads": 1,
        }
        load = {"before": list(load_before), "after": list(load_after)}
        record.write(json_path, "explore", settings, results, load_average=load, note=note)


if __name__ == "__main__":
    main()
