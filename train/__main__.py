"""Command line: python -m train --config=train/configs/default.py --workdir=DIR.

Any config field can be overridden, e.g. `--config.num_epochs=10`,
`--config.schedule.max_value=0.2`, `--config.schedule.boundaries_epochs=[2,4]`
or `--config.model_kwargs.dropout_rate=0.3`; a config file may take an
argument after a colon, e.g. `--config=train/configs/default.py:knee` picks the
schedule. Exit statuses are listed in train/cli.py.
"""

import pathlib
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from train import cli

DEFAULT_CONFIG = pathlib.Path(__file__).parent / 'configs' / 'default.py'

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for metrics, checkpoints and '
                    'the figure. Running again with it resumes the run.')
# New attributes are accepted so that `model_kwargs` and the schedule's
# arguments can be set from the command line; unknown top-level fields are
# refused by train.config_validation, naming the valid ones.
config_flags.DEFINE_config_file(
    'config', str(DEFAULT_CONFIG), 'Training configuration file.',
    lock_config=False, accept_new_attributes=True)
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv  # cli.parse_flags refuses stray arguments.
  cli.quiet_logging()
  from train import train  # pylint: disable=g-import-not-at-top
  result = cli.run_or_exit(train.train_and_evaluate, cli.loaded_config(),
                           FLAGS.workdir)
  if result.metrics['signal']:
    sys.exit(128 + result.metrics['signal'])


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
