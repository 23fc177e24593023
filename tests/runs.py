"""The small digits run the training tests share, as a config and as flags.

ResNet-8 on scikit-learn's digits, batch 64 on one device: 22 steps an
epoch, 3 epochs, a metrics line every 5 steps.
"""

from train.configs import default

SETTINGS = dict(batch_size=64, num_epochs=3, num_devices=1, log_every_steps=5,
                keep_checkpoints=5, progress=False)

# The same run from the command line.
FLAGS = [f'--config.{field}={value}' for field, value in SETTINGS.items()]


def small_config(**overrides):
  """The shared run's config, with `overrides` set."""
  config = default.get_config()
  for field, value in {**SETTINGS, **overrides}.items():
    setattr(config, field, value)
  return config
