"""A user's script typed against optax: it runs, and type checkers accept it.

tests/typing/user_script.py passes every schedule and transformation of
plrs_jax where optax takes one. pyright and mypy (the `lint` extra) check it
with the settings at the root of the repository; a script with a type error
shows that they see optax's real signatures rather than Any.
"""

import importlib.util
import pathlib
import runpy
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'tests' / 'typing' / 'user_script.py'

# Wrong in a way only optax's annotations tell: an int is not a schedule.
MISTYPED = '''
import optax
import plrs_jax

schedule: optax.Schedule = plrs_jax.plrs_schedule(0, 0.07, 0.1)
not_a_schedule: optax.Schedule = 3
'''


def test_user_script_runs():
  runpy.run_path(str(SCRIPT), run_name='__main__')


def check(checker, path):
  """Runs `checker` on `path`; with or without the repository's settings."""
  options = {
      'pyright': [],
      # Only the script's errors (the library is checked on its own), and
      # optax's annotations read although it has no py.typed marker.
      'mypy': ['--follow-imports=silent', '--follow-untyped-imports'],
  }[checker]
  return subprocess.run([sys.executable, '-m', checker, *options, str(path)],
                        cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.slow
@pytest.mark.parametrize('checker', ['pyright', 'mypy'])
def test_type_checkers_accept_user_script(checker, tmp_path):
  if importlib.util.find_spec(checker) is None:
    pytest.skip(f"{checker} is not installed: pip install -e '.[lint]'")
  result = check(checker, SCRIPT)
  assert result.returncode == 0, result.stdout + result.stderr
  mistyped = tmp_path / 'mistyped.py'
  mistyped.write_text(MISTYPED)
  result = check(checker, mistyped)
  assert result.returncode != 0
  assert 'mistyped.py:6' in result.stdout, result.stdout + result.stderr
  assert 'mistyped.py:5' not in result.stdout, result.stdout
