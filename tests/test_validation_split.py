"""config.validation_split: held-out training images, class-balanced, that
the app evaluates every epoch; the statistics are the rest's."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import runs
from train import engine
from train import input_pipeline
from train import train


def _rows(images):
  return sorted(image.tobytes() for image in images)


def test_held_out_images_are_balanced_disjoint_and_fixed_by_the_seed():
  full = input_pipeline.load_dataset('digits')
  split = input_pipeline.load_dataset('digits', validation_split=300)
  images, labels = input_pipeline.as_arrays(split.train)
  held, held_labels = input_pipeline.as_arrays(split.validation)
  whole, _ = input_pipeline.as_arrays(full.train)
  assert len(held) == 300 and len(images) == len(whole) - 300
  assert np.bincount(held_labels).tolist() == [30] * 10
  # Together they are the training split, each image once.
  assert _rows(np.concatenate([images, held])) == _rows(whole)
  # Per-channel statistics of the images trained on, not of the held-out.
  np.testing.assert_allclose(split.mean, [images.astype(np.float64).mean()],
                             rtol=1e-12)
  np.testing.assert_allclose(split.std, [images.astype(np.float64).std()],
                             rtol=1e-12)
  again = input_pipeline.load_dataset('digits', validation_split=300)
  other = input_pipeline.load_dataset('digits', validation_split=300,
                                      split_seed=1)
  assert _rows(input_pipeline.as_arrays(again.validation)[0]) == _rows(held)
  assert _rows(input_pipeline.as_arrays(other.validation)[0]) != _rows(held)
  # The subset is drawn from what is left.
  subset = input_pipeline.load_dataset('digits', validation_split=300,
                                       train_subset=500)
  assert len(subset.train) == 500 and len(subset.validation) == 300


def test_a_split_that_cannot_be_balanced_names_the_field():
  with pytest.raises(input_pipeline.ConfigError,
                     match=r'config.validation_split=305: .*multiple of 10'):
    input_pipeline.load_dataset('digits', validation_split=305)


@pytest.mark.slow
def test_the_app_evaluates_the_validation_split_every_epoch(tmp_path):
  config = runs.small_config(model='mlp', num_epochs=2,
                             validation_split=200, eval_batch_size=40)
  result = train.train_and_evaluate(config, str(tmp_path))
  epochs = [json.loads(line) for line in
            (tmp_path / 'metrics.jsonl').read_text().splitlines()
            if 'epoch' in line]
  assert [r['epoch'] for r in epochs] == [1, 2]
  assert all('validation_accuracy' in r and 'test_accuracy' in r
             for r in epochs)
  # The last record's accuracy is the final parameters' on the held-out
  # images, computed here with the model directly.
  dataset = input_pipeline.dataset_from_config(config)
  images, labels = input_pipeline.as_arrays(dataset.validation)
  state = result.state
  logits = state.apply_fn(
      {'params': state.params, 'batch_stats': state.batch_stats},
      engine.normalize(jnp.asarray(images), dataset.mean, dataset.std),
      train=False)
  accuracy = float(jnp.mean(jnp.argmax(logits, -1) == labels))
  assert epochs[-1]['validation_accuracy'] == pytest.approx(accuracy,
                                                            abs=1e-6)
  assert len(jax.tree.leaves(state.params))
