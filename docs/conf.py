"""Sphinx configuration of orcha's documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html``; the test suite
does the same (``tests/docs``), so a warning fails CI.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, os.path.dirname(HERE))

import orcha  # noqa: E402
from orcha.cli.app import OrchaGroup  # noqa: E402
from orcha.plugins import discover  # noqa: E402

# The reference pages show orcha and its own plugins, whatever else the building
# machine has installed.
OrchaGroup._plugins = [p for p in discover() if p.embedded]

project = "orcha"
author = "The orcha developers"
copyright = "2026, The orcha developers"
release = orcha.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.graphviz",
    "sphinx_click",
    "orcha_docs",
]

exclude_patterns = ["_build", "examples/**/README*"]
# Every literal block names its language: the examples test runs each one by it.
highlight_language = "none"
nitpicky = False
# No typographic quotes and dashes: docutils' smartquotes turned "--json" and "ID -- CMD"
# into en dashes (in headings, the sidebar, the CLI reference), which break when copied
# into a shell. tests/docs checks that no dash lookalike stands where an option is written.
smartquotes = False

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

graphviz_output_format = "svg"

html_theme = "alabaster"
html_title = f"orcha {release}"
html_static_path: list[str] = []
