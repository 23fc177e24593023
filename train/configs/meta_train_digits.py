"""Meta-train MLR-SNet on scikit-learn's digits with a ResNet-8, offline: the
net shipped as train/mlr_snet_digits.npz (train/mlr_snet_file.py)."""

from train.configs import base


def get_config():
  # 1,438 training images: 38 steps an epoch, 228 meta steps (official: 200).
  return base.meta_train_config(
      num_epochs=60, batch_size=32, num_meta=200, meta_batch_size=32,
      t_val=10, snapshot_epochs=(1, 30, 60), log_every_steps=38)
