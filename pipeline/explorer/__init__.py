"""The explorer (``dcign-explore``): move a model's latents in the browser, beside Blender's render.

- :mod:`.explorer`: the models, the faces and what the page shows for each setting of the sliders
  (no Gradio; the tests and the benchmark drive it directly);
- :mod:`.worker`: the one persistent Blender scene, in a spawned worker process;
- :mod:`.page`: the Gradio page's layout and its wiring; :mod:`.handlers`: what each event does;
- :mod:`.cli`: the command; :mod:`.browser`: headless Chromium (the browser test, the screenshot).
"""


class ExploreError(ValueError):
    """A model, face, upload or request the explorer cannot show (the message names it)."""
