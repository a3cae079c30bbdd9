"""Sphinx configuration for the vframework docs (built by ``tox -e docs`` with -W)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "vframework"
author = "the vframework developers"
copyright = "2026, the vframework developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser", "vfdocs"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "vframework"
autodoc_member_order = "bysource"
autodoc_typehints = "none"
# Types in signatures name classes of pydantic, numpy and pluggy that are not documented here.
nitpicky = False
suppress_warnings = ["myst.header"]
