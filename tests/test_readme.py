"""The README is a landing page: short, its examples run, its commands and
links are the ones the project documents."""

import re

import pytest

import markdown_examples as examples

README = examples.REPO / 'README.md'
# CI runs this command as written (.ci/run).
TEST_COMMAND = "python -m pip install -e '.[test]' && python -m pytest"


def test_readme_has_examples():
  assert examples.python_blocks('README.md'), (
      'the README should show the API in a ```python block')


@pytest.mark.parametrize('page,index', examples.example_params(['README.md']))
def test_example_runs(page, index):
  examples.run_example(page, index)


def test_readme_is_at_most_a_thousand_words():
  # Counted over the Markdown source, code and tables included.
  words = len(README.read_text().split())
  assert words <= 1000, f'README.md has {words} words; move detail to docs/'


def test_readme_gives_the_install_and_test_commands():
  text = README.read_text()
  assert 'pip install plrs-jax' in text
  assert TEST_COMMAND in text


def test_readme_first_example_is_the_api_in_five_lines():
  first = examples.python_blocks('README.md')[0]
  assert len(first.strip().splitlines()) <= 5
  assert 'plrs_jax.plrs_schedule' in first
  assert not examples.needs_train(first)


def test_readme_links_into_every_main_docs_page():
  linked = set(re.findall(r'\]\(docs/(\w+)\.md\)', README.read_text()))
  assert {'getting_started', 'choosing_bounds', 'guide', 'training',
          'distributed', 'which_schedule', 'benchmarks', 'fidelity'} <= linked
