"""Gradio tabs. Each module exposes ``TITLE`` and ``build(ctx: demos.common.AppContext)``.

app.py creates one ``gr.Tab(module.TITLE)`` per entry of :data:`TABS`, in this order,
and calls ``module.build(ctx)`` inside it.  Register a new tab by adding its module here.
"""
from __future__ import annotations

from types import ModuleType

from demos import attributes, explore, generate, invert, paint, text

TABS: list[ModuleType] = [generate, explore, text, attributes, paint, invert]
