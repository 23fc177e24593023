"""Sphinx configuration of the plrs_jax documentation.

Builds offline: no intersphinx, and MathJax is served from the built site
(sphinx-mathjax-offline) rather than from a CDN.

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import pathlib
import sys

# The API reference imports plrs_jax from this checkout, installed or not.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import plrs_jax  # pylint: disable=g-import-not-at-top,wrong-import-position

project = 'plrs_jax'
author = 'The plrs_jax authors'
copyright = 'The plrs_jax authors'  # pylint: disable=redefined-builtin
release = plrs_jax.__version__

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx-mathjax-offline',
]

source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}
root_doc = 'index'
exclude_patterns = ['_build']

myst_enable_extensions = ['dollarmath']
myst_heading_anchors = 3

autodoc_typehints = 'none'
autodoc_member_order = 'bysource'
autodoc_default_options = {'exclude-members': '__init__, __new__'}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = 'sphinx_book_theme'
html_title = 'plrs_jax'
html_theme_options = {
    'show_toc_level': 2,
}
html_static_path = ['_static']
html_css_files = ['tables.css']
