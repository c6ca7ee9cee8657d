"""What each event of the explorer's page does: show a face, move a slider, traverse, load a checkpoint.

A handler answers with the new values of the components it updates (``gr.skip()`` for those it
leaves); an error it expects is shown in the page's message box and logged, and the page keeps
serving. Imported by :func:`.page.build_app` only, after :func:`.page.offline`.
"""

from __future__ import annotations

import time
from pathlib import Path

import gradio as gr

from pipeline.evaluation import calibration as C
from pipeline.explorer import ExploreError
from pipeline.explorer.explorer import (
    N_INTRINSIC,
    Explorer,
    Face,
    LoadedModel,
    View,
    enlarge,
    fmt_degrees,
    load,
    log,
    scene_label,
    slider_label,
    write_gif,
)
from render.vocabulary import FACTORS


class Handlers:
    """The page's event handlers over ``explorer``; ``n_face_outputs``: how many components showing a
    face updates (:attr:`.page.Widgets.face_outputs`), ``expected``: the errors shown, not raised."""

    def __init__(self, explorer: Explorer, n_face_outputs: int, gif_dir: Path, expected: tuple):
        self.explorer = explorer
        self.n_face_outputs = n_face_outputs
        self.gif_dir = gif_dir
        self.expected = expected
        self.test_sweeps = list(explorer.test_faces.sets) if explorer.test_faces else []

    # --- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def fail(e: Exception) -> str:
        message = str(e)
        log.warning("%s", message)
        gr.Warning(message)
        return message

    @staticmethod
    def values(lm: LoadedModel, raw) -> tuple[dict, dict]:
        angles = {f: float(v if v is not None else 0.0) for f, v in zip(FACTORS, raw[:3], strict=True)}
        intrinsic = {i: float(v or 0.0) for i, v in zip(lm.intrinsic, raw[3:], strict=False)}
        return angles, intrinsic

    @staticmethod
    def shown(view: View) -> tuple:
        return (
            enlarge(view.decoded),
            None if view.rendered is None else enlarge(view.rendered),
            view.render_label(),
            view.metrics_label(),
        )

    @staticmethod
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

    def show(self, name: str, face: Face) -> list:
        """Every face output for ``face`` under model ``name``: sliders at its start values, its view."""
        explorer = self.explorer
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
            *self.slider_updates(lm, start),
            *self.shown(view),
            explorer.code_label(name, view.code),
            gr.Dropdown(choices=choices, value=FACTORS[0]),
        ]

    def skip_face_outputs(self, message: str) -> list:
        return [message] + [gr.skip()] * (self.n_face_outputs - 1)

    # --- the events --------------------------------------------------------------------------------
    def on_start(self, name):
        try:
            if self.test_sweeps:
                try:
                    return self.show(name, self.explorer.test_face(self.test_sweeps[0], 0))
                except ExploreError as e:  # e.g. test data at another resolution: say so, show a new face
                    log.warning("%s", e)
            return self.show(name, self.explorer.random_face(0))
        except self.expected as e:
            return self.skip_face_outputs(self.fail(e))

    def on_test(self, name, sweep, index):
        try:
            return self.show(name, self.explorer.test_face(sweep, int(index or 0)))
        except self.expected as e:
            return self.skip_face_outputs(self.fail(e))

    def on_random(self, name, seed):
        try:
            return self.show(name, self.explorer.random_face(int(seed or 0)))
        except self.expected as e:
            return self.skip_face_outputs(self.fail(e))

    def on_upload(self, name, path):
        if not path:
            return self.skip_face_outputs("")
        try:
            return self.show(name, self.explorer.upload(path))
        except self.expected as e:
            return self.skip_face_outputs(self.fail(e))

    def on_model(self, name, st):
        if not st:
            return self.skip_face_outputs("")
        try:
            return self.show(name, st["face"])
        except self.expected as e:
            return self.skip_face_outputs(self.fail(e))

    def on_slide(self, name, st, *raw):
        if not st or name not in st["mu"]:
            return ["", gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()]
        try:
            angles, intrinsic = self.values(self.explorer.model(name), raw)
            view = self.explorer.view(name, st["face"], st["mu"][name], angles, intrinsic)
            return ["", *self.shown(view), self.explorer.code_label(name, view.code)]
        except self.expected as e:
            return [self.fail(e), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()]

    def on_traverse(self, name, st, which, *raw):
        if not st or name not in st["mu"]:
            return ["Pick a face first.", gr.skip(), gr.skip()]
        try:
            lm = self.explorer.model(name)
            angles, intrinsic = self.values(lm, raw)
            frames = self.explorer.traverse(name, st["face"], st["mu"][name], angles, intrinsic, which)
            path = self.gif_dir / f"traverse-{lm.name}-{which}-{time.strftime('%H%M%S')}.gif"
            write_gif(frames, path)
            return ["", str(path), str(path)]
        except self.expected as e:
            return [self.fail(e), gr.skip(), gr.skip()]

    def on_load(self, path, calib, st):
        try:
            if not (path or "").strip():
                raise ExploreError("name a checkpoint folder to load")
            lm = load(path.strip(), (calib or "").strip() or None)
            name = self.explorer.add(lm)
            log.info("loaded %s (%s) as %s", path, lm.method, name)
            pick = gr.Dropdown(choices=list(self.explorer.models), value=name)
            loaded = f"Loaded {path} as {name}."
            if not st:
                return [loaded] + [gr.skip()] * (self.n_face_outputs - 1) + [pick]
            return [loaded, *self.show(name, st["face"])[1:], pick]
        except self.expected as e:
            return self.skip_face_outputs(self.fail(e)) + [gr.skip()]
