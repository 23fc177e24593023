"""Meta-train MLR-SNet on scikit-learn's digits with a ResNet-8, offline:

    python -m train.meta_train --config=train/configs/meta_train_digits.py \
        --workdir=/tmp/mlr_snet_digits

`base.meta_train_config` scaled to 1,438 training images (38 steps an epoch,
228 meta steps, about the official 200). Its output is the net shipped as
train/mlr_snet_digits.npz (see train/mlr_snet_file.py).
"""

import ml_collections

from train.configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.meta_train_config()
  config.update(num_epochs=60, batch_size=32, num_meta=200, meta_batch_size=32,
                t_val=10, snapshot_epochs=(1, 30, 60), log_every_steps=38)
  return config
