"""Meta-train MLR-SNet on scikit-learn's digits with a ResNet-8, offline: the
net shipped as train/mlr_snet_digits.npz (train/mlr_snet_file.py)."""

from train.configs import base


def get_config():
  config = base.meta_train_config()
  # 1,438 training images: 38 steps an epoch, 228 meta steps (official: 200).
  config.num_epochs = 60
  config.batch_size = 32
  config.num_meta = 200
  config.meta_batch_size = 32
  config.t_val = 10
  config.snapshot_epochs = (1, 30, 60)
  config.log_every_steps = 38
  return config
