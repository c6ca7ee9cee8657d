"""A model's results at a glance: :mod:`.rerender` (``dcign-rerender``: a photo at new angles),
:mod:`.summary` (``dcign-summary``: the headline figures in a terminal), :mod:`.report`
(``dcign-report``: a markdown review against a base revision, for pull requests).
"""
