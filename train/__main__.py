"""python -m train --config=train/configs/default.py --workdir=DIR; any field
can be overridden (`--config.num_epochs=10`, `--config.schedule.max_value=0.2`)
and a config may take an argument (`--config=train/configs/default.py:knee`).
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
