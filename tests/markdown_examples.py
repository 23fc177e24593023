"""The code blocks of the README and of the docs pages, and what each needs.

A ```python block is an example that runs as written; ```bash, ```text and
the other fences are shown, not run. A block that imports only the library
and what it depends on (jax, optax, chex, numpy, the standard library) runs
against the installed package alone; one that imports the training stack
(train, flax, orbax...) is marked `train`, so `pytest -m "not train"`
selects the library's examples in an environment without it.
"""

import ast
import pathlib
import re
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / 'docs'

# What a library-only example may import: the package and its dependencies.
LIBRARY_MODULES = frozenset({'plrs_jax', 'jax', 'optax', 'chex', 'numpy'})
# What the `train` extra adds (pyproject.toml), and the app itself.
TRAIN_MODULES = frozenset({'train', 'flax', 'orbax', 'grain',
                           'tensorflow_datasets', 'ml_collections', 'absl',
                           'tqdm', 'matplotlib', 'sklearn'})
# Fences that are shown and never run, besides MyST's directives
# (```{toctree}); anything else is a mistake (```py would silently not run).
SHOWN_LANGUAGES = frozenset({'bash', 'text', 'toml', 'json'})

_FENCE = re.compile(r'^```([^\n`]*)\n(.*?)^```[ \t]*$', re.M | re.S)


def pages() -> list[str]:
  """README.md and every docs page, as paths relative to the repository."""
  return ['README.md'] + sorted(
      str(path.relative_to(REPO)) for path in DOCS.glob('*.md'))


def fenced_blocks(page: str) -> list[tuple[str, str]]:
  """(language, code) of each fenced block of `page`, in order."""
  text = (REPO / page).read_text()
  return [(info.strip().split(' ')[0] if info.strip() else '', code)
          for info, code in _FENCE.findall(text)]


def without_fenced_blocks(text: str) -> str:
  """`text` with its fenced blocks left out (their brackets are code)."""
  return _FENCE.sub('', text)


def python_blocks(page: str) -> list[str]:
  """The code of each ```python block of `page`."""
  return [code for language, code in fenced_blocks(page)
          if language == 'python']


def imported_modules(code: str) -> set[str]:
  """The top-level names of the modules `code` imports."""
  modules = set()
  for node in ast.walk(ast.parse(code)):
    if isinstance(node, ast.Import):
      modules.update(alias.name.split('.')[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
      modules.add(node.module.split('.')[0])
  return modules


def is_shown(language: str) -> bool:
  """Whether a block of `language` is shown, not run (a MyST directive is)."""
  return language in SHOWN_LANGUAGES or language.startswith('{')


def needs_train(code: str) -> bool:
  """Whether `code` needs the training stack (else the library alone)."""
  return bool(imported_modules(code) & TRAIN_MODULES)


def unknown_imports(code: str) -> set[str]:
  """Modules `code` imports that neither the library nor `train` provides."""
  return (imported_modules(code) - LIBRARY_MODULES - TRAIN_MODULES
          - set(sys.stdlib_module_names))


def example_params(page_list: list[str]) -> list:
  """One pytest parameter per ```python block, marked `train` if it needs
  the training stack; ids are `PAGE:INDEX`."""
  return [pytest.param(page, index,
                       marks=[pytest.mark.train] if needs_train(code) else [],
                       id=f'{page}:{index}')
          for page in page_list
          for index, code in enumerate(python_blocks(page))]


def run_example(page: str, index: int) -> None:
  """Runs block `index` of `page` in a fresh namespace."""
  code = python_blocks(page)[index]
  exec(compile(code, f'{page} block {index}', 'exec'), {})  # pylint: disable=exec-used
