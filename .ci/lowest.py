"""Prints pins at the lowest versions pyproject.toml admits.

For the library's dependencies and the extras named on the command line,
each `name>=X` becomes `name==X` (and `name==X` stays), so CI can install
the oldest releases a user may get and run the tests against them:

    python .ci/lowest.py train test > lowest.txt
    pip install -e '.[test]' -c lowest.txt
"""

import pathlib
import re
import sys
import tomllib

PROJECT = tomllib.loads(
    (pathlib.Path(__file__).parents[1] / 'pyproject.toml').read_text()
)['project']


def lowest_pins(extras):
  requirements = list(PROJECT['dependencies'])
  for extra in extras:
    requirements += PROJECT['optional-dependencies'][extra]
  pins = {}
  for requirement in requirements:
    if requirement.startswith(PROJECT['name']):
      continue  # the project's own extras, listed on the command line
    match = re.match(r'([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*(?:>=|==)\s*([^,;\s]+)',
                     requirement)
    if not match:
      sys.exit(f'.ci/lowest.py: {requirement!r} has no lower bound; give it one')
    name, version = match.groups()
    pins[name.lower()] = version
  return [f'{name}=={version}' for name, version in sorted(pins.items())]


if __name__ == '__main__':
  print('\n'.join(lowest_pins(sys.argv[1:])))
