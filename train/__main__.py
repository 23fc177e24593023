"""Command line: python -m train --config=train/configs/default.py --workdir=DIR.

Any config field can be overridden, e.g. `--config.num_epochs=10` or
`--config.schedule.max_value=0.2`; a config file may take an argument after a
colon, e.g. `--config=train/configs/default.py:knee` picks the schedule.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from train import cli
from train import train

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for metrics, checkpoints and '
                    'the figure. Running again with it resumes the run.')
config_flags.DEFINE_config_file(
    'config', 'train/configs/default.py', 'Training configuration file.',
    lock_config=True)
flags.mark_flags_as_required(['workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  cli.quiet_logging()
  cli.run_or_exit(train.train_and_evaluate, FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main)
