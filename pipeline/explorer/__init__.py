"""The explorer (``dcign-explore``): move a model's latents in the browser, beside Blender's render.

:mod:`.explorer` (the models, the faces, what the page shows, the Blender worker, the Gradio page),
:mod:`.cli` (the command), :mod:`.browser` (headless Chromium: the browser test, the screenshot).
"""
