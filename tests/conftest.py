"""Test set-up: 8 simulated CPU devices, fixed before JAX starts its backend."""

import atexit
import os
import shutil
import tempfile

# Tests must see the same devices on every machine: force the CPU backend and
# split it into 8 devices so pmap tests run anywhere.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Many tests (and the programs they start, which inherit the environment)
# compile the same models: a compilation cache shared by this session saves
# minutes. It lives and dies with the session.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _cache = tempfile.mkdtemp(prefix='plrs_jax_test_cache_')
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _cache
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')

import jax  # pylint: disable=g-import-not-at-top

jax.config.update('jax_num_cpu_devices', 8)

import pytest  # pylint: disable=g-import-not-at-top,g-bad-import-order

# The scripts that wrote tests/data are no tests (and share a name).
collect_ignore_glob = ['data/*']


@pytest.fixture(scope='session')
def reference_run(tmp_path_factory):
  """An uninterrupted run of `runs.small_config()`: (workdir, result)."""
  import runs  # pylint: disable=g-import-not-at-top
  from train import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('reference')
  return workdir, train.train_and_evaluate(runs.small_config(), str(workdir))


def pytest_configure(config):
  # The docs' examples that need the training stack (tests/markdown_examples);
  # `-m "not train"` runs the library's alone, as against the wheel.
  config.addinivalue_line(
      'markers', 'train: needs the training stack (the train extra)')


# The benchmark programs run end to end (their --quick runs, interrupts and
# bad command lines): minutes of subprocesses, kept out of the default run so
# `pytest` stays within ten minutes; `pytest -m benchmark` runs them, as CI does.
_BENCHMARK_MODULES = ('test_benchmarks_', 'test_study', 'test_twins')


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    if (item.get_closest_marker('slow')
        and item.path.name.startswith(_BENCHMARK_MODULES)):
      item.add_marker('benchmark')
