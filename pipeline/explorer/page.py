"""The explorer's page: the Gradio widgets laid out (:func:`layout`) and wired to the handlers of
:mod:`.handlers` (:func:`wire`); :func:`build_app` makes the page, :func:`launch` serves it.

Gradio (the ``explore`` extra) is imported when a page is built, after :func:`offline`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.evaluation import calibration as C
from pipeline.explorer import ExploreError
from pipeline.explorer.explorer import INTRINSIC_RANGE, N_INTRINSIC, Explorer, slider_label
from render.vocabulary import FACTORS

# Gradio phones home unless told not to (analytics, version checks); the Hugging Face client it
# pulls in likewise. The machines this runs on may have no internet at all.
OFFLINE_ENVIRONMENT = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}
SHOWN_ERRORS: tuple = (ExploreError, C.CalibrationError)  # and CheckpointError, ShardError (added in build_app)


def offline() -> None:
    """Set the variables that keep Gradio and its Hugging Face client from reaching the internet."""
    for k, v in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(k, v)


@dataclass
class Widgets:
    """The page's components that the events read or update."""

    state: object  # gr.State: {"face": Face, "mu": {model name: code}}
    error: object
    model_pick: object
    sweep_pick: object
    index_pick: object
    test_button: object
    seed_pick: object
    random_button: object
    upload: object
    ckpt_path: object
    calib_path: object
    load_button: object
    face_info: object
    shown_input: object
    decoded: object
    rendered: object
    render_label: object
    metrics: object
    factor_sliders: list
    intrinsic_sliders: list
    code_text: object
    traverse_pick: object
    traverse_button: object
    traverse_image: object
    traverse_file: object

    @property
    def sliders(self) -> list:
        return self.factor_sliders + self.intrinsic_sliders

    @property
    def face_outputs(self) -> list:
        """What showing a face updates, in the order of :meth:`.handlers.Handlers.show`'s answer."""
        shown = [self.decoded, self.rendered, self.render_label, self.metrics, self.code_text, self.traverse_pick]
        return [self.error, self.state, self.shown_input, self.face_info, *self.sliders, *shown]


def build_app(explorer: Explorer, title: str = "dcign explorer"):
    """The Gradio page (a ``gr.Blocks``) over ``explorer``; launch it with :func:`launch`."""
    offline()
    import gradio as gr

    from dcign.checkpoint import CheckpointError
    from pipeline.explorer.handlers import Handlers
    from render.shards import ShardError

    expected = (*SHOWN_ERRORS, CheckpointError, ShardError)
    gif_dir = Path(tempfile.mkdtemp(prefix="dcign-explore-"))
    atexit.register(shutil.rmtree, gif_dir, ignore_errors=True)
    # delete_cache: Gradio's copies of images, GIFs and uploads older than an hour go, hourly
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        widgets = layout(gr, explorer, title)
        wire(gr, demo, widgets, Handlers(explorer, len(widgets.face_outputs), gif_dir, expected))
    return demo


def layout(gr, explorer: Explorer, title: str) -> Widgets:
    """The page's components, inside the ``gr.Blocks`` being built: the choices on the left, the faces,
    sliders, code and traversal on the right."""
    lm0 = explorer.model(None)
    test_sweeps = list(explorer.test_faces.sets) if explorer.test_faces else []
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
                sweep_pick = gr.Dropdown(test_sweeps, value=test_sweeps[0] if test_sweeps else None, label="Test sweep")
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
    return Widgets(
        state,
        error,
        model_pick,
        sweep_pick,
        index_pick,
        test_button,
        seed_pick,
        random_button,
        upload,
        ckpt_path,
        calib_path,
        load_button,
        face_info,
        shown_input,
        decoded,
        rendered,
        render_label,
        metrics,
        factor_sliders,
        intrinsic_sliders,
        code_text,
        traverse_pick,
        traverse_button,
        traverse_image,
        traverse_file,
    )


def wire(gr, demo, w: Widgets, h) -> None:
    """Each event of the page to its handler (a :class:`.handlers.Handlers`)."""
    face_outputs = w.face_outputs
    demo.load(h.on_start, [w.model_pick], face_outputs)
    w.test_button.click(h.on_test, [w.model_pick, w.sweep_pick, w.index_pick], face_outputs)
    w.random_button.click(h.on_random, [w.model_pick, w.seed_pick], face_outputs)
    w.upload.upload(h.on_upload, [w.model_pick, w.upload], face_outputs)
    w.model_pick.input(h.on_model, [w.model_pick, w.state], face_outputs)
    # Only moves by the user (.input), not the values a new face sets; the newest move wins.
    gr.on(
        [s.input for s in w.sliders],
        h.on_slide,
        [w.model_pick, w.state, *w.sliders],
        [w.error, w.decoded, w.rendered, w.render_label, w.metrics, w.code_text],
        trigger_mode="always_last",
        show_progress="hidden",
        api_name="move",
    )
    traverse_inputs = [w.model_pick, w.state, w.traverse_pick, *w.sliders]
    w.traverse_button.click(h.on_traverse, traverse_inputs, [w.error, w.traverse_image, w.traverse_file])
    w.load_button.click(h.on_load, [w.ckpt_path, w.calib_path, w.state], [*face_outputs, w.model_pick])


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
