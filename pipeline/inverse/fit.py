"""Inverse graphics: recover the scene (pose, light, face) that produced one image.

The paper's second use of the learned code: a *summary statistic* for analysis-by-synthesis.
A fit runs in two stages, the classic amortised-then-refined inverse graphics:

1. **Amortised** (:func:`amortised`): encode the image once; read azimuth, elevation and light
   off their latent groups through the calibration curves (:mod:`pipeline.evaluation.calibration`, the
   monotone inverse tables fitted on the test sweeps) and keep the intrinsic code. The face
   starts as the model's mean face (coefficients 0): nothing maps the intrinsic code to the
   face model's coefficients.
2. **Analysis-by-synthesis** (:func:`search`): starting there, CMA-ES proposes scenes (the three
   angles and the first ``shape_components`` shape and ``albedo_components`` albedo coefficients
   of the face model), a renderer draws each proposal with one persistent Blender scene
   (:class:`render.scene_renderer.SceneRenderer`), and an objective compares the render with
   the observed image:

   - ``code``: the distance between the DC-IGN codes (posterior means) of render and image,
     per latent group the mean squared difference, weighted per group (default 1 each, so the
     one-latent angle groups count as much as the whole intrinsic group); a model without
     groups (the entangled baseline) is compared over its whole code;
   - ``pixel``: mean squared error of the grey images in [0, 1], the baseline summary statistic;
   - ``ssim``: 1 - SSIM of the two images (optional baseline).

   Beside the start, nine azimuths spread over the range are rendered (``azimuth_grid``) and the
   best of them all starts CMA-ES, which is a local search. When coefficients are searched, it
   runs until half the budget (``angles_first``) over the three angles alone with the face held at
   the start's, then over everything from the best scene so far. The search stops after
   ``budget`` renders, the start's render included, so every objective gets the same number of
   renders; the best scene ever rendered is the answer, so a search never ends worse (under its
   own objective) than where it started.

Why CMA-ES (the ``cma`` package, N. Hansen's maintained reference implementation, pure Python on
numpy): the objective is a black box (a path-traced render and a network), a little noisy, with
a few to twenty continuous parameters and a budget of a few hundred evaluations; that is the case
CMA-ES is made for, without gradients or hand-tuned step sizes. Its random draws come from a
generator seeded by ``FitConfig.seed``, never from numpy's global state, and Cycles renders with a
fixed seed, so a fit is deterministic given its seed.

Search coordinates: each angle in units of a sixth of its rendered range (azimuth 30 degrees,
elevation 7.7, light 26.7 by default), coefficients in units of their standard deviation
(bounded to +-``coefficient_bound``); angles are bounded to the rendered ranges.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.evaluation import calibration as C
from pipeline.evaluation.encode import encode
from render.scene_renderer import Scene
from render.vocabulary import FACTORS

OBJECTIVES = ("code", "pixel", "ssim")
METHODS = ("amortised", *OBJECTIVES)  # what a fit row reports: the amortised estimate or one search


MAX_BUDGET = 100_000  # renders per search: 200 take seconds, a typo of 10**9 would run for weeks
ANGLE_STEP_AFTER = 0.3  # the angles' share of the initial step when everything is searched after them


class FitError(ValueError):
    """An image, model or request that cannot be fitted (the message names it)."""


@dataclass(frozen=True)
class FitConfig:
    budget: int = 200  # renders per search, the start's render included
    shape_components: int = 10  # leading shape coefficients searched (the rest stay 0)
    albedo_components: int = 3  # leading albedo coefficients searched
    sigma0: float = 0.5  # CMA-ES initial step, in search units (see the module docstring)
    popsize: int = 0  # proposals per CMA-ES generation; 0: CMA's default 4 + 3 ln(n)
    coefficient_bound: float = 3.0  # coefficients stay within +-this many std
    azimuth_grid: int = 9  # azimuths rendered across the range beside the start (0: none; needs budget >= 4x)
    angles_first: float = 0.5  # share of the budget spent on the angles alone before searching everything
    seed: int = 0
    weights: dict = field(default_factory=dict)  # code objective: group name -> weight (default 1)

    def validate(self) -> FitConfig:
        if not isinstance(self.budget, int) or not 2 <= self.budget <= MAX_BUDGET:
            raise FitError(f"budget must be an integer of 2 to {MAX_BUDGET} renders, got {self.budget!r}")
        for name in ("shape_components", "albedo_components", "popsize", "azimuth_grid"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise FitError(f"{name} must be a non-negative integer, got {v!r}")
        if not 0.0 <= self.angles_first < 1.0:
            raise FitError(f"angles_first must lie in [0, 1), got {self.angles_first!r}")
        if not (self.sigma0 > 0 and self.coefficient_bound > 0):
            raise FitError("sigma0 and coefficient_bound must be positive")
        if any(not (np.isfinite(w) and w >= 0) for w in self.weights.values()):
            raise FitError(f"group weights must be finite and non-negative, got {self.weights}")
        return self


Render = Callable[[Sequence[Scene]], np.ndarray]  # scenes -> (n, R, R) uint8 grey images


# --- stage 1: amortised ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Amortised:
    scene: Scene  # calibrated angles, mean face
    mu: np.ndarray  # (D,) posterior mean of the image
    logvar: np.ndarray  # (D,)
    intrinsic: np.ndarray  # the intrinsic group's part of mu (the whole code for a model without groups)


def amortised(model, calibration: C.Calibration, image: np.ndarray, grouped: bool = True) -> Amortised:
    """Encode a uint8 (R, R) image and read its scene off the code (the mean face, coefficients 0)."""
    mu, logvar = encode(model, np.asarray(image, dtype=np.uint8)[None])
    angles = C.read_angles(calibration, mu[0])
    intrinsic = mu[0, model.groups["intrinsic"]] if grouped else mu[0]
    return Amortised(Scene(**angles), mu[0], logvar[0], intrinsic.copy())


# --- objectives ------------------------------------------------------------------------------------
class CodeObjective:
    """Weighted per-group mean squared distance between the codes (posterior means) of renders and the image."""

    name = "code"

    def __init__(self, model, target: np.ndarray, grouped: bool = True, weights: dict | None = None):
        self.model = model
        self.target = encode(model, np.asarray(target, dtype=np.uint8)[None])[0][0].astype(np.float64)
        groups = dict(model.groups) if grouped else {"code": slice(0, self.target.size)}
        weights = weights or {}
        unknown = set(weights) - set(groups)
        if unknown:
            raise FitError(f"weights for unknown latent groups {sorted(unknown)} (groups: {', '.join(groups)})")
        self.groups = {g: (s, float(weights.get(g, 1.0))) for g, s in groups.items() if s.stop > s.start}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        mu = encode(self.model, images)[0].astype(np.float64)
        d2 = (mu - self.target) ** 2
        return sum(w * d2[:, s].mean(axis=1) for s, w in self.groups.values())


class PixelObjective:
    """Mean squared error of the grey images in [0, 1]."""

    name = "pixel"

    def __init__(self, target: np.ndarray):
        self.target = np.asarray(target, dtype=np.float64) / 255.0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float64) / 255.0
        return ((x - self.target) ** 2).mean(axis=(1, 2))


class SSIMObjective:
    """1 - SSIM (Gaussian-window SSIM of :mod:`pipeline.metrics.reconstruction`)."""

    name = "ssim"

    def __init__(self, target: np.ndarray):
        self.target = np.asarray(target, dtype=np.float64) / 255.0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        from pipeline.metrics import ssim

        x = np.asarray(images, dtype=np.float64) / 255.0
        return np.array([1.0 - ssim(im, self.target) for im in x])


def make_objective(name: str, image: np.ndarray, model=None, grouped: bool = True, weights: dict | None = None):
    if name == "code":
        if model is None:
            raise FitError("the code objective needs a model")
        return CodeObjective(model, image, grouped, weights)
    if name == "pixel":
        return PixelObjective(image)
    if name == "ssim":
        return SSIMObjective(image)
    raise FitError(f"unknown objective {name!r} (expected one of {', '.join(OBJECTIVES)})")


# --- stage 2: analysis-by-synthesis ----------------------------------------------------------------
@dataclass
class SearchResult:
    scene: Scene  # the best scene rendered
    value: float  # its objective value
    image: np.ndarray  # its render, uint8 (R, R)
    start_value: float  # the objective at the start
    start_image: np.ndarray  # the start's render, uint8 (R, R)
    renders: int
    seconds: float
    trace: list[dict]  # per generation: iteration, renders so far, best so far, the generation's best


class SearchSpace:
    """Scenes <-> CMA-ES coordinates (angles / a sixth of their range, coefficients in std), with bounds."""

    def __init__(self, ranges: dict, n_shape: int, n_albedo: int, coefficient_bound: float = 3.0):
        self.ranges = {f: (float(ranges[f][0]), float(ranges[f][1])) for f in FACTORS}
        self.scale = np.array([max((hi - lo) / 6.0, 1e-6) for lo, hi in self.ranges.values()])
        self.n_shape, self.n_albedo = int(n_shape), int(n_albedo)
        n = 3 + self.n_shape + self.n_albedo
        self.lower = np.full(n, -float(coefficient_bound))
        self.upper = np.full(n, float(coefficient_bound))
        for i, (lo, hi) in enumerate(self.ranges.values()):
            self.lower[i], self.upper[i] = lo / self.scale[i], hi / self.scale[i]

    @property
    def dim(self) -> int:
        return self.lower.size

    def angles_only(self) -> SearchSpace:
        """The same angles and bounds, no coefficients."""
        bound = float(self.upper[3]) if self.dim > 3 else 3.0
        return SearchSpace(self.ranges, 0, 0, bound)

    def to_x(self, scene: Scene) -> np.ndarray:
        shape = np.zeros(self.n_shape)
        albedo = np.zeros(self.n_albedo)
        k, j = min(len(scene.shape), self.n_shape), min(len(scene.albedo), self.n_albedo)
        shape[:k], albedo[:j] = scene.shape[:k], scene.albedo[:j]
        angles = np.array([scene.azimuth, scene.elevation, scene.light]) / self.scale
        return np.clip(np.concatenate([angles, shape, albedo]), self.lower, self.upper)

    def to_scene(self, x: np.ndarray) -> Scene:
        x = np.clip(np.asarray(x, dtype=np.float64), self.lower, self.upper)
        az, el, li = x[:3] * self.scale
        shape = tuple(float(c) for c in x[3 : 3 + self.n_shape])
        albedo = tuple(float(c) for c in x[3 + self.n_shape :])
        return Scene(float(az), float(el), float(li), shape, albedo)


def _cma(objective, render: Render, start: Scene, space: SearchSpace, cfg: FitConfig, budget: int, stage: int, known):
    """One CMA-ES run from ``start`` (whose value and render are ``known``) for ``budget`` more renders."""
    import cma

    x0 = space.to_x(start)
    start = space.to_scene(x0)
    renders = 0
    best = (known[0], start, known[1])
    trace = [{"iteration": 0, "renders": renders, "best": known[0], "generation_best": known[0]}]
    rng = np.random.default_rng([int(cfg.seed), 0xF17, stage])
    opts = {
        "bounds": [space.lower.tolist(), space.upper.tolist()],
        "seed": np.nan,  # leave numpy's global generator alone: draws come from `randn`
        "randn": lambda *shape: rng.standard_normal(shape),
        "verbose": -9,
        "verb_log": 0,
        "verb_disp": 0,
        # Spend the whole budget: a flat or barely improving stretch is no reason to stop early.
        "tolfun": 0.0,
        "tolfunhist": 0.0,
        "tolflatfitness": 10**9,
    }
    if cfg.popsize:
        opts["popsize"] = max(2, cfg.popsize)
    if stage == 2:  # the angles were narrowed by the first stage: smaller steps for them
        opts["CMA_stds"] = [ANGLE_STEP_AFTER] * 3 + [1.0] * (space.dim - 3)
    es = cma.CMAEvolutionStrategy(x0.tolist(), cfg.sigma0, opts)
    iteration = 0
    while renders < budget:
        xs = es.ask()
        room = budget - renders
        scenes = [space.to_scene(x) for x in xs[:room]]
        images = render(scenes)
        values = np.asarray(objective(images), dtype=np.float64)
        renders += len(scenes)
        iteration += 1
        i = int(np.argmin(values))
        if values[i] < best[0]:
            best = (float(values[i]), scenes[i], images[i])
        trace.append({"iteration": iteration, "renders": renders, "best": best[0], "generation_best": float(values[i])})
        if len(scenes) < len(xs):  # the budget ran out inside this generation
            break
        es.tell(xs, values.tolist())
        if es.stop():  # converged (tolx, ...) before the budget ran out
            break
    return best, renders, trace


def search(objective, render: Render, start: Scene, space: SearchSpace, cfg: FitConfig) -> SearchResult:
    """Search from ``start`` for ``cfg.budget`` renders (the start's included); the best scene rendered wins.

    1. ``cfg.azimuth_grid`` azimuths evenly spread over the range (the start's elevation, light and
       face) are rendered beside the start, and the best of them all starts the CMA-ES: a local
       search cannot cross from a wrong side of the face to the right one.
    2. When coefficients are searched too, ``cfg.angles_first`` of the budget searches the three
       angles alone (the face held at the start's), a small space CMA-ES narrows quickly;
    3. the rest searches everything from the best scene so far, with smaller steps for the angles.

    ``objective(images (n, R, R) uint8) -> (n,)`` values to minimise; ``render(scenes)`` draws
    scenes. Deterministic given ``cfg.seed`` (and a deterministic renderer).
    """
    import cma  # noqa: F401 - imported before the clock starts: the first import takes seconds

    cfg.validate()
    t0 = time.perf_counter()
    start = space.to_scene(space.to_x(start))
    first = render([start])
    known = (float(objective(first)[0]), first[0])
    best, renders = (known[0], start), 1
    trace = [{"iteration": 0, "renders": 1, "best": known[0], "generation_best": known[0]}]
    n_grid = cfg.azimuth_grid if cfg.budget >= 4 * cfg.azimuth_grid else 0
    if n_grid:
        lo, hi = space.ranges["azimuth"]
        grid = [replace(start, azimuth=float(lo + (i + 0.5) * (hi - lo) / n_grid)) for i in range(n_grid)]
        images = render(grid)
        values = np.asarray(objective(images), dtype=np.float64)
        renders += n_grid
        i = int(np.argmin(values))
        if values[i] < best[0]:
            best, held = (float(values[i]), grid[i]), (float(values[i]), images[i])
        else:
            held = known
        trace.append({"iteration": 1, "renders": renders, "best": best[0], "generation_best": float(values[i])})
    else:
        held = known
    origin = best[1]

    def run(scene, sp, budget, stage, held, rend):
        nonlocal renders, trace
        (value, found, image), used, tr = _cma(objective, rend, scene, sp, cfg, budget, stage, held)
        offset = trace[-1]["iteration"]
        trace += [{**t, "iteration": t["iteration"] + offset, "renders": t["renders"] + renders} for t in tr[1:]]
        renders += used
        return found, (value, image)

    first_budget = int(round(cfg.angles_first * cfg.budget)) if space.dim > 3 else 0
    if first_budget - renders >= 2 and cfg.budget - first_budget >= 2:  # the angles alone, the face held

        def keep_face(scenes):
            return render([replace(sc, shape=origin.shape, albedo=origin.albedo) for sc in scenes])

        found, held = run(origin, space.angles_only(), first_budget - renders, 1, held, keep_face)
        origin = replace(found, shape=origin.shape, albedo=origin.albedo)
        found, held = run(origin, space, cfg.budget - renders, 2, held, render)
    else:
        found, held = run(origin, space, cfg.budget - renders, 1, held, render)
    value, image = held
    return SearchResult(found, value, image, known[0], known[1], renders, time.perf_counter() - t0, trace)


# --- one image, every stage ------------------------------------------------------------------------
@dataclass
class Fit:
    """What a fit of one image found: the amortised estimate and one search per objective."""

    amortised: Amortised
    amortised_image: np.ndarray  # render of the amortised scene, uint8 (R, R)
    amortised_seconds: float  # encoding and read-out (the render excluded)
    searches: dict[str, SearchResult]


def fit_image(
    image: np.ndarray,
    model,
    calibration: C.Calibration,
    render: Render,
    space: SearchSpace,
    cfg: FitConfig,
    objectives: Sequence[str] = ("code",),
    grouped: bool = True,
) -> Fit:
    """Fit one uint8 (R, R) grey image: the amortised estimate, then one search per objective from it."""
    cfg.validate()
    r = model.config.resolution
    image = np.asarray(image)
    if image.shape != (r, r) or image.dtype != np.uint8:
        raise FitError(f"expected a uint8 ({r}, {r}) image, got {image.dtype} {image.shape}")
    t0 = time.perf_counter()
    am = amortised(model, calibration, image, grouped)
    seconds = time.perf_counter() - t0
    searches = {}
    for name in objectives:
        obj = make_objective(name, image, model, grouped, cfg.weights)
        searches[name] = search(obj, render, am.scene, space, cfg)
    if searches:  # every search starts with a render of the amortised scene: reuse it
        am_image = next(iter(searches.values())).start_image
    else:
        am_image = render([space.to_scene(space.to_x(am.scene))])[0]
    return Fit(am, am_image, seconds, searches)


# --- what a fit reports ----------------------------------------------------------------------------
def shape_correlation(recovered, true) -> float | None:
    """Pearson correlation of recovered vs true coefficients (the recovered ones' length); None if undefined."""
    k = min(len(recovered), len(true))
    if k < 2:
        return None
    a, b = np.asarray(recovered[:k], np.float64), np.asarray(true[:k], np.float64)
    if np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def fit_rows(fit: Fit, image: np.ndarray, truth: dict | None = None) -> list[dict]:
    """One row per method (the amortised estimate, then each search): scene, objective, cost, re-render quality.

    With ``truth`` (azimuth, elevation, light, shape, albedo of a rendered image) each row also has
    the absolute angle errors (degrees) and the correlation of recovered and true shape coefficients.
    """
    from pipeline.metrics import psnr, ssim

    x = np.asarray(image, np.float64) / 255.0
    results = [("amortised", fit.amortised.scene, None, None, fit.amortised_image, 0, fit.amortised_seconds)]
    for name, s in fit.searches.items():
        results.append((name, s.scene, s.value, s.start_value, s.image, s.renders, s.seconds))
    rows = []
    for method, scene, value, start, rendered, renders, seconds in results:
        y = np.asarray(rendered, np.float64) / 255.0
        row = {
            "method": method,
            **scene.as_dict(),
            "objective": value,
            "start_objective": start,
            "renders": int(renders),
            "seconds": float(seconds),
            "psnr": psnr(x, y),
            "ssim": ssim(x, y),
        }
        if truth is not None:
            for f in FACTORS:
                row[f"error_{f}"] = abs(float(getattr(scene, f)) - float(truth[f]))
            row["shape_correlation"] = shape_correlation(scene.shape, truth.get("shape", ()))
        rows.append(row)
    return rows


def traces(fit: Fit) -> dict[str, list[dict]]:
    return {name: s.trace for name, s in fit.searches.items()}
