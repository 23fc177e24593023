"""Meta-train MLR-SNet on scikit-learn's digits with a ResNet-8, offline.

    python -m train.meta_train --config=train/configs/meta_train_digits.py --workdir=/tmp/mlr_snet_digits

The official recipe (`base.meta_train_config`) scaled to 1,438 training
images: 200 of them held out (20 a class) for the meta loss, the rest
trained on in batches of 32 (38 steps an epoch) for 60 epochs, with a meta
step every 10 steps (228 meta steps, about the official run's 200); the
snapshots after meta-epochs 1, 30 and 60 are kept. Its output is the net
shipped as train/mlr_snet_digits.npz (see train/mlr_snet_file.py).
"""

import ml_collections

from train.configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.meta_train_config()
  config.num_epochs = 60
  config.batch_size = 32
  config.num_meta = 200
  config.meta_batch_size = 32
  config.t_val = 10
  config.snapshot_epochs = (1, 30, 60)
  config.log_every_steps = 38
  return config
