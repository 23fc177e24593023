"""The Python examples of the README and of docs/guide.md run as written."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import plrs_jax

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = ('README.md', 'docs/guide.md')
BLOCKS = {name: re.findall(r'```python\n(.*?)```',
                           (REPO / name).read_text(), flags=re.S)
          for name in DOCS}


@pytest.mark.parametrize('name', DOCS)
def test_docs_have_examples(name):
  assert BLOCKS[name], f'{name} should show the API in ```python blocks'


@pytest.mark.parametrize('name,index', [
    (name, index) for name in DOCS for index in range(len(BLOCKS[name]))])
def test_example_runs(name, index):
  exec(compile(BLOCKS[name][index], f'{name} block {index}', 'exec'), {})


def _chunked_rates(schedule, num_steps, chunk=2**20):
  """Rates of steps [0, num_steps), chunk by chunk (one compiled program)."""
  rates = jax.jit(jax.vmap(schedule))
  for start in range(0, num_steps, chunk):
    steps = jnp.arange(start, min(start + chunk, num_steps), dtype=jnp.int32)
    yield steps, rates(steps)


@pytest.mark.slow
def test_readme_claims_hold_over_ten_million_steps():
  # The README's schedules and claims, over 1e7 steps rather than 1e4: every
  # float32 draw (2**23 of them) is reached about once.
  num_steps = 10_000_000
  schedule = plrs_jax.plrs_schedule(0, min_value=0.07, max_value=0.1)
  noise = jax.jit(jax.vmap(schedule.noise))
  lowest, highest, noise_sum = np.float32(np.inf), np.float32(-np.inf), 0.0
  for steps, rates in _chunked_rates(schedule, num_steps):
    lowest = min(lowest, np.float32(rates.min()))
    highest = max(highest, np.float32(rates.max()))
    noise_sum += float(jnp.sum(noise(steps)))
  # As the README compares them: float32 rates against the float32 bounds
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
