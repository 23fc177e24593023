"""Command line: python -m train --config=train/configs/default.py --workdir=DIR.

Any config field can be overridden, e.g. `--config.num_epochs=10`,
`--config.schedule.max_value=0.2`, `--config.schedule.boundaries_epochs=[2,4]`
or `--config.model_kwargs.dropout_rate=0.3`; a config file may take an
argument after a colon, e.g. `--config=train/configs/default.py:knee` picks the
schedule. Exit statuses are listed in train/cli.py.
"""

import sys

from train import cli

cli.define_flags('default.py', 'Directory for metrics, checkpoints and the '
                 'figure. Running again with it resumes the run.')


def main():
  from train import train  # pylint: disable=g-import-not-at-top
  result = cli.run(train.train_and_evaluate)
  if result.metrics['signal']:
    sys.exit(128 + result.metrics['signal'])


if __name__ == '__main__':
  cli.start(main)
