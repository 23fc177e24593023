"""The docs pages: their examples run, their links and figures exist, the API
reference documents exactly `plrs_jax.__all__`, and the tuned comparison's
and the twins study's tables are those of their results files."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import markdown_examples as examples
import plrs_jax

REPO, DOCS = examples.REPO, examples.DOCS
DOC_PAGES = [page for page in examples.pages() if page != 'README.md']
# `.. autofunction:: plrs_jax.NAME`, `.. py:data:: plrs_jax.NAME`...
_DIRECTIVE = re.compile(r'^\.\. (?:auto\w+|py:\w+):: plrs_jax\.(\w+)\s*$',
                        re.M)


def test_pages_show_the_api_in_python_blocks():
  for page in ('docs/getting_started.md', 'docs/guide.md',
               'docs/choosing_bounds.md', 'docs/other_methods.md'):
    assert examples.python_blocks(page), page


@pytest.mark.parametrize('page,index', examples.example_params(DOC_PAGES))
def test_example_runs(page, index):
  examples.run_example(page, index)


@pytest.mark.parametrize('page', examples.pages())
def test_fences_are_run_or_shown(page):
  # A typo such as ```py would turn an example into text nobody runs.
  for language, _ in examples.fenced_blocks(page):
    assert language == 'python' or examples.is_shown(language), (
        f'{page}: a ```{language} block; write ```python for an example '
        f'that runs, or one of {sorted(examples.SHOWN_LANGUAGES)}')


@pytest.mark.parametrize('page', examples.pages())
def test_examples_import_the_library_or_the_training_stack(page):
  # CI runs the library's examples against the wheel, without `train`'s
  # dependencies: an example needing anything else would fail only there.
  for index, code in enumerate(examples.python_blocks(page)):
    assert not examples.unknown_imports(code), (page, index)


def test_train_marker_tells_library_examples_from_app_examples():
  marked = lambda code: examples.needs_train(code)
  assert marked('from train import seeds\nimport jax')
  assert marked('import orbax.checkpoint as ocp')
  assert marked('from flax import nnx')
  assert not marked('import jax, optax, plrs_jax\nimport itertools')
  assert examples.unknown_imports('import torch, jax') == {'torch'}


@pytest.mark.parametrize('page', examples.pages())
def test_links_and_figures_exist(page):
  text = examples.without_fenced_blocks((REPO / page).read_text())
  base = (REPO / page).parent
  for target in re.findall(r'\]\(([^)\s]+)\)', text):
    if re.match(r'[a-z]+://', target) or target.startswith('#'):
      continue
    path = target.split('#')[0]
    assert (base / path).exists(), f'{page} links to {target}'


def test_every_page_is_in_the_table_of_contents():
  index = (DOCS / 'index.md').read_text()
  listed = set(re.findall(r'^([a-z_]+)$', index, flags=re.M))
  on_disk = {path.stem for path in DOCS.glob('*.md')} | {
      path.stem for path in DOCS.glob('*.rst')}
  assert on_disk - {'index'} == listed


def documented_names() -> list[str]:
  return _DIRECTIVE.findall((DOCS / 'api.rst').read_text())


def test_api_reference_documents_every_public_name_once():
  names = documented_names()
  assert sorted(names) == sorted(set(names)), 'a name documented twice'
  assert set(names) == set(plrs_jax.__all__)


def test_api_directive_pattern_reads_the_reference():
  assert _DIRECTIVE.findall('.. autofunction:: plrs_jax.plrs_schedule\n'
                            '.. autoclass:: plrs_jax.PLRSSchedule\n'
                            '   :members: noise\n'
                            '.. py:data:: plrs_jax.SCHEDULES\n'
                            'plrs_jax.not_a_directive\n') == [
                                'plrs_schedule', 'PLRSSchedule', 'SCHEDULES']


# The tuned comparison: docs/which_schedule.md's tables against the JSON.

STUDY = REPO / 'benchmarks' / 'results' / 'study_fashion_mnist.json'
_ROW = re.compile(r'^\| (\w+) \| ([^|]+) \| ([\d.]+) \(([\d.]+)\) \|'
                  r'([^|]*)\|([^|]*)\|$', re.M)


def _difference(entry):
  if entry is None:
    return ''
  mean, (low, high) = 100 * entry['mean'], entry['ci95']
  star = ' *' if entry['holm'] else ''
  return f'{mean:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]{star}'


def _tables():
  """Rows of each budget's table of which_schedule.md, by budget."""
  text = (DOCS / 'which_schedule.md').read_text()
  parts = re.split(r'^\*(\d+) epochs\*', text, flags=re.M)[1:]
  return {budget: _ROW.findall(body.split('\n\n![')[0].split('\n\n## ')[0])
          for budget, body in zip(parts[::2], parts[1::2])}


def test_study_tables_are_the_results_file():
  study = json.loads(STUDY.read_text())
  tables = _tables()
  assert sorted(tables) == sorted(study['budgets'])
  for budget, rows in tables.items():
    results, comparisons = study['budgets'][budget], study['comparisons'][
        budget]
    # Every method of the study, in the order of its mean test accuracy.
    assert [row[0] for row in rows] == sorted(
        results, key=lambda m: -np.mean(results[m]['test_accuracy']))
    for method, rate, mean, sd, minus_best, minus_plrs in rows:
      accuracy = 100 * np.array(results[method]['test_accuracy'])
      assert (mean, sd) == (f'{accuracy.mean():.2f}',
                            f'{accuracy.std(ddof=1):.2f}'), method
      chosen, bounds = results[method].get('chosen'), results[method].get(
          'bounds')
      if chosen is not None:
        assert rate.strip() == f'{chosen:g}', method
      elif isinstance(bounds, list):  # PLRS at the range test's bounds
        assert rate.strip() == f'{bounds[1]:.3g}', method
      else:
        assert rate.strip() == 'learnt', method
      assert minus_best.strip() == _difference(
          comparisons['minus_best'].get(method)), method
      assert minus_plrs.strip() == _difference(
          comparisons['minus_plrs'].get(method)), method


def test_study_difference_format_reads_an_entry():
  entry = dict(mean=-0.0405, ci95=[-0.051, -0.03], holm=True)
  assert _difference(entry) == '-4.05 [-5.10, -3.00] *'
  assert _difference(None) == ''


# The getting-started page's claims, far beyond its examples' 1e4 steps.

def _chunked_rates(schedule, num_steps, chunk=2**20):
  """Rates of steps [0, num_steps), chunk by chunk (one compiled program)."""
  rates = jax.jit(jax.vmap(schedule))
  for start in range(0, num_steps, chunk):
    steps = jnp.arange(start, min(start + chunk, num_steps), dtype=jnp.int32)
    yield steps, rates(steps)


@pytest.mark.slow
def test_getting_started_claims_hold_over_ten_million_steps():
  # The page's schedules and claims, over 1e7 steps rather than 1e4: every
  # float32 draw (2**23 of them) is reached about once.
  num_steps = 10_000_000
  schedule = plrs_jax.plrs_schedule(0, min_value=0.07, max_value=0.1)
  noise = jax.jit(jax.vmap(schedule.noise))
  lowest, highest, noise_sum = np.float32(np.inf), np.float32(-np.inf), 0.0
  for steps, rates in _chunked_rates(schedule, num_steps):
    lowest = min(lowest, np.float32(rates.min()))
    highest = max(highest, np.float32(rates.max()))
    noise_sum += float(jnp.sum(noise(steps)))
  # As the page compares them: float32 rates against the float32 bounds
  # (jnp converts the Python floats 0.07 and 0.1 to float32).
  assert np.float32(0.07) <= lowest and highest <= np.float32(0.1)
  assert abs(noise_sum / num_steps) < 1e-3
  # Its per-epoch, warmup and annealed examples stay within their bounds.
  for low, high, kwargs in [(0.35, 0.4, dict(hold_steps=390)),
                            (0.07, 0.1, dict(warmup_steps=5000))]:
    bounded = plrs_jax.plrs_schedule(0, low, high, **kwargs)
    for _, rates in _chunked_rates(bounded, num_steps):
      assert np.float32(low) <= rates.min() and rates.max() <= np.float32(high)
  decay = optax.cosine_decay_schedule(0.1, 10_000)
  annealed = plrs_jax.plrs_schedule(0, min_value=0.01, max_value=decay)
  for steps, rates in _chunked_rates(annealed, num_steps):
    high = jax.vmap(decay)(steps)
    assert (rates >= jnp.minimum(high, 0.01)).all()
    assert (rates <= jnp.maximum(high, 0.01)).all()


# The twins study: docs/does_the_draw_help.md's tables against the JSON,
# recomputed from the per-seed test accuracies (scipy's paired t-test, Holm
# restated).

TWINS = REPO / 'benchmarks' / 'results' / 'twins_fashion_mnist.json'


def _markdown_table(text: str, first_header: str) -> list[list[str]]:
  """The rows of the table whose header starts with `first_header`."""
  lines = text.split(f'| {first_header} |', 1)[1].split('\n\n')[0]
  return [[cell.strip() for cell in line.strip().strip('|').split('|')]
          for line in lines.splitlines()[2:]]


def _interval(a, b) -> tuple[str, float, float]:
  """a - b paired: '+m [+lo, +hi]' in points, the half-width, the p."""
  difference = 100 * np.subtract(a, b)
  test = stats.ttest_1samp(difference, 0.0)
  low, high = test.confidence_interval()
  return (f'{difference.mean():+.2f} [{low:+.2f}, {high:+.2f}]',
          (high - low) / 2, test.pvalue)


def _holm(p_values: dict[str, float], alpha: float) -> dict[str, bool]:
  rejected, still = {}, True
  for i, (name, p) in enumerate(sorted(p_values.items(), key=lambda x: x[1])):
    still = still and p <= alpha / (len(p_values) - i)
    rejected[name] = still
  return rejected


def test_twins_tables_are_the_results_file():
  result = json.loads(TWINS.read_text())
  text = (DOCS / 'does_the_draw_help.md').read_text()
  primary = _markdown_table(text, 'pair')
  family, rows = {}, {}
  for epochs, cells in result['budgets'].items():
    for pair, cell in cells.items():
      runs = {(f['arm'], f['level']): f['test_accuracy']
              for f in cell['final']}
      chosen = cell['chosen']
      # The chosen level is the best mean validation accuracy of the grid.
      for arm in ('random', 'twin'):
        means = [np.mean(point[arm]) for point in cell['grid']]
        best = cell['grid'][int(np.argmax(means))]['level']
        assert chosen[arm] == best, (epochs, pair, arm)
      c = chosen['random']
      assert len(runs['random', c]) >= 20
      shown, half_width, p = _interval(runs['random', c], runs['twin', c])
      family[f'{epochs}/{pair}'] = p
      rows[f'{epochs}/{pair}'] = [
          f'{pair} - {cell["twin"]}', epochs, f'{c:g}',
          f'{100 * np.mean(runs["random", c]):.2f}',
          f'{100 * np.mean(runs["twin", c]):.2f}', shown,
          f'{half_width:.2f}', f'{p:.3g}']
      own, _, _ = _interval(runs['random', c], runs['twin', chosen['twin']])
      rows[f'own {epochs}/{pair}'] = [
          f'{pair} - {cell["twin"]}', epochs, f'{c:g}', f'{chosen["twin"]:g}',
          f'{100 * np.mean(runs["twin", chosen["twin"]]):.2f}', own]
  holm = _holm(family, 0.05)
  assert len(primary) == len(family) == 6
  for row, name in zip(primary, family):
    assert row == rows[name] + ['yes' if holm[name] else 'no'], name
  secondary = _markdown_table(text.split('each arm at its own level', 1)[1],
                              'pair')
  assert secondary == [rows[f'own {name}'] for name in family]
