"""Render speed, noise and memory, measured side by side in one run.

    python -m benchmarks.render [--resolution 64] [--samples 4] [--batches 20] [--repeats 4] [--json FILE]

(a) naive: rebuild the scene for every image, write it to a PNG file on disk, read it back;
    one render thread, the process pinned to one core.
(b) dcign's renderer, one worker (one render thread), the process pinned to one core.
(c) dcign's renderer with its default: one worker per allowed core, each pinned to its own.
(b) and (c) are steady-state rates, from the first shard started to the last one finished, in
images/s; the table shows the fastest of ``--repeats`` interleaved tries (a shared machine's
noise only ever slows a run) and, last, the ratio of the medians; the pool's start-up is
printed apart. Reported per sweep type, since changing the mesh (shape/texture/intrinsic)
costs more than moving the camera or the light. Then the noise at the chosen samples as
PSNR against a 512-sample reference of the same view, and one worker's memory after 100
and after N images. ``--json FILE`` writes every figure printed, with the machine and the date.
"""

from __future__ import annotations

import os

# (a) and (b) run in this process: like the renderer's pool workers, numpy gets one BLAS
# thread (idle BLAS threads spin and would share the pinned core). Read at numpy's import.
os.environ.update(dict.fromkeys(("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"), "1"))

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import record
from render.engine import render_sweep
from render.faces.loaders import load_face_model
from render.job import RenderJob
from render.pool import allowed_cores
from render.renderer import Renderer, SceneSettings
from render.sweeps import SweepConfig, batch_factors
from render.vocabulary import SWEEPS

BATCH_SIZE = 20
REFERENCE_SAMPLES = 512


def naive_images(job: RenderJob, n_images: int, workdir: Path) -> float:
    """Seconds per image when everything is rebuilt and round-tripped through a file per image."""
    import bpy
    import cv2

    from render import camera, lighting, material
    from render.scene import configure_cycles, silenced_stdout

    model = load_face_model(job.model)
    f = batch_factors(job.seed, job.sweep, 0, job.sweep_cfg, model.n_shape, model.n_albedo)
    t0 = time.perf_counter()
    for i in range(n_images):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        configure_cycles(scene, job.resolution, job.samples, threads=1, device="cpu")
        scene.render.use_persistent_data = False
        cam = camera.create_camera(scene)
        sun = lighting.create_light(scene)
        lighting.create_world(scene)
        mat = material.create_skin_material()
        verts, cols = model.instance(f["shape"][i % len(f["shape"])], f["albedo"][i % len(f["albedo"])])
        mesh = bpy.data.meshes.new("face")
        mesh.from_pydata(verts.tolist(), [], model.triangles.tolist())
        mesh.shade_smooth()
        attr = mesh.color_attributes.new(material.COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
        attr.data.foreach_set("color", np.concatenate([cols, np.ones((len(cols), 1), np.float32)], 1).ravel())
        mesh.materials.append(mat)
        obj = bpy.data.objects.new("face", mesh)
        obj.rotation_euler = (np.pi / 2, 0, 0)
        scene.collection.objects.link(obj)
        az, el, li = (float(f[k][i % len(f[k])]) for k in ("azimuth", "elevation", "light"))
        camera.set_view(cam, az, el)
        lighting.set_light(sun, li, az, el)
        path = workdir / f"naive_{i}.png"
        scene.render.filepath = str(path)
        with silenced_stdout():
            bpy.ops.render.render(write_still=True)
        assert cv2.imread(str(path)) is not None
        path.unlink()
    return (time.perf_counter() - t0) / n_images


@contextlib.contextmanager
def one_core():
    """Pin this process (and any child it starts) to a single core."""
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def project_run(job: RenderJob, workers: int, workdir: Path, pinned: bool) -> dict:
    out = Path(tempfile.mkdtemp(dir=workdir))
    with one_core() if pinned else contextlib.nullcontext():
        return render_sweep(job, out, workers=workers, progress=False)


def project_rates(job: RenderJob, workdir: Path, repeats: int) -> tuple[dict[str, list[float]], list[float]]:
    """Steady-state images/s of (b) and (c) in each of ``repeats`` tries, and the pool's start-up in each.

    The rate counts from the first shard a worker starts to the last one finished, so the
    start-up (spawning workers, importing Blender, building the face model), which a long
    run pays once, is reported apart. Variants alternate so a slow spell hits both.
    """
    rates: dict[str, list[float]] = {"b": [], "c": []}
    startups = []
    for _ in range(repeats):
        for variant, workers, pinned in (("b", 1, True), ("c", 0, False)):
            run = project_run(job, workers, workdir, pinned)
            rates[variant].append(run["images_per_s"])
            if variant == "c":
                startups.append(run["seconds"] - run["render_seconds"])
    return rates, startups


def noise_psnr(resolution: int, samples: int, reference_samples: int = REFERENCE_SAMPLES) -> float:
    model = load_face_model("default")
    f = batch_factors(0, "intrinsic", 0, SweepConfig(batch_size=1), model.n_shape, model.n_albedo)
    images = []
    for spp in (samples, reference_samples):
        with Renderer(SceneSettings(resolution, spp)) as renderer:
            images.append(renderer.render_faces(model, f["shape"], f["albedo"], [30.0], [10.0], [-30.0])[0])
    mse = np.mean((images[0].astype(np.float64) - images[1].astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse > 0 else float("inf")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_growth(resolution: int, samples: int, n_images: int) -> tuple[float, float]:
    """One persistent scene changing the face every image (the costliest case): RSS after 100 and n images."""
    model = load_face_model("default")
    rng = np.random.default_rng(0)
    shape, albedo = model.sample(rng, n_images)
    azimuth = rng.uniform(-90, 90, n_images)
    zeros = np.zeros(n_images)
    first = min(100, n_images)
    with Renderer(SceneSettings(resolution, samples, threads=1)) as renderer:
        renderer.render_faces(model, shape[:first], albedo[:first], azimuth[:first], zeros, zeros)
        after_100 = rss_mib() if n_images >= 100 else float("nan")
        if n_images > first:
            rest = slice(first, n_images)
            renderer.render_faces(model, shape[rest], albedo[rest], azimuth[rest], zeros[rest], zeros[rest])
        return after_100, rss_mib()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--samples", type=int, default=RenderJob.samples, help="default: the renderer's")
    ap.add_argument("--batches", type=int, default=20, help=f"batches of {BATCH_SIZE} per run (one shard each)")
    ap.add_argument("--repeats", type=int, default=4, help="tries per run; the fastest counts")
    ap.add_argument("--naive-images", type=int, default=20)
    ap.add_argument("--memory-images", type=int, default=2000)
    ap.add_argument("--sweeps", default=",".join(SWEEPS))
    ap.add_argument("--json", dest="json_path", help="also write every figure, the machine and the date here")
    args = ap.parse_args()

    machine = record.machine()
    workers = len(allowed_cores())
    print(f"{time.strftime('%Y-%m-%d')}, {machine['cpu']}, {machine['cores']} cores ({workers} allowed)")
    print(f"resolution {args.resolution}, {args.samples} samples/pixel, {args.repeats} tries per run")
    print(f"{'sweep':<10} {'(a) naive':>10} {'(b) 1 core':>11} {'(c) all':>9} {'b/a':>7} {'c/b':>7}   median c/b")
    sweeps, startups = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for sweep in args.sweeps.split(","):
            job = RenderJob(
                sweep=sweep,
                n_batches=args.batches,
                resolution=args.resolution,
                samples=args.samples,
                batches_per_shard=1,
                sweep_cfg=SweepConfig(batch_size=BATCH_SIZE),
            )
            with one_core():
                naive = [1 / naive_images(job, args.naive_images, work) for _ in range(args.repeats)]
            rates, start = project_rates(job, work, args.repeats)
            a, b, c = max(naive), max(rates["b"]), max(rates["c"])
            median = float(np.median(rates["c"]) / np.median(rates["b"]))
            startups += start
            sweeps[sweep] = {
                "naive": a,
                "one_worker": b,
                "all_workers": c,
                "b_over_a": b / a,
                "c_over_b": c / b,
                "c_over_b_medians": median,
                "tries": {"naive": naive, "one_worker": rates["b"], "all_workers": rates["c"]},
            }
            print(
                f"{sweep:<10} {a:>10.1f} {b:>11.1f} {c:>9.1f} {b / a:>6.2f}x {c / b:>6.2f}x   {median:.2f}x", flush=True
            )
    startup = float(np.mean(startups))
    print(f"start-up of the worker pool (paid once per run): {startup:.1f} s")
    psnr = noise_psnr(args.resolution, args.samples)
    print(f"noise: PSNR at {args.samples} samples vs {REFERENCE_SAMPLES}: {psnr:.1f} dB")
    m100, mn = memory_growth(args.resolution, args.samples, args.memory_images)
    print(f"worker memory: {m100:.0f} MiB after 100 images, {mn:.0f} MiB after {args.memory_images}")
    if args.json_path:
        settings = {**vars(args), "sweeps": args.sweeps.split(","), "batch_size": BATCH_SIZE, "workers": workers}
        del settings["json_path"]
        results = {
            "images_per_s": sweeps,
            "pool_startup_s": startup,
            "noise_psnr_db": psnr,
            "reference_samples": REFERENCE_SAMPLES,
            "worker_memory_mib": {"after_100": m100, "after_n": mn, "n": args.memory_images},
        }
        record.write(args.json_path, "render", settings, results)


if __name__ == "__main__":
    main()
