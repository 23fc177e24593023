"""A config's schedule and optimizer ('sgd', 'two_regime', 'autodrop',
'mlr_snet' or optax's by name), reporting its rate through its state."""

from collections.abc import Callable
import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

import plrs_jax
from train import config_validation
from train import durations
from train import mlr_snet_file


def create_schedule(schedule_config: ml_collections.ConfigDict | dict, *,
                    key: jax.Array, steps_per_epoch: int,
                    num_steps: int) -> optax.Schedule:
  """`plrs_jax.create_schedule` of a config section, its durations in steps
  (`durations.in_steps`), given the run's `total_steps` and `key` where it
  takes them and the config does not; a `total_steps` shorter than the run
  is a ConfigError.
    >>> schedule = create_schedule(
    ...     {'name': 'multistep', 'init_value': 0.1,
    ...      'boundaries_epochs': [2]}, key=jax.random.key(0),
    ...     steps_per_epoch=10, num_steps=30)
    >>> [round(float(schedule(step)), 6) for step in (19, 20)]
    [0.1, 0.01]
  """
  kwargs = durations.in_steps(schedule_config, 'schedule',
                              steps_per_epoch=steps_per_epoch,
                              num_steps=num_steps)
  name = kwargs.pop('name')
  for field in MOMENTUM_FIELDS:  # The optimizer's, see `create_optimizer`.
    kwargs.pop(field, None)
  if kwargs.get('total_steps', num_steps) < num_steps:
    field = next(f for f in schedule_config if f.startswith('total_steps'))
    raise config_validation.ConfigError(
        f'config.schedule.{field}={schedule_config[field]!r} ends the '
        f'schedule after {kwargs["total_steps"]} of the run\'s {num_steps} '
        'steps, leaving the rest at its final rate: leave it unset, and the '
        'schedule ends with the run.')
  parameters = inspect.signature(
      plrs_jax.SCHEDULES.get(name, lambda: None)).parameters
  for arg, value in (('total_steps', num_steps), ('key', key)):
    if arg in parameters:
      kwargs.setdefault(arg, value)
  return plrs_jax.create_schedule(name, **kwargs)


# A cyclic_triangular schedule's fields of the momentum (PyTorch's CyclicLR).
MOMENTUM_FIELDS = ('cycle_momentum', 'base_momentum', 'max_momentum')


def _cyclic_momentum(config: ml_collections.ConfigDict,
                     steps_per_epoch: int) -> optax.Schedule | None:
  fields = durations.in_steps(
      config.schedule, 'schedule', steps_per_epoch=steps_per_epoch,
      num_steps=config.num_epochs * steps_per_epoch)
  given = sorted(set(MOMENTUM_FIELDS) & set(fields))
  if given and fields['name'] != 'cyclic_triangular':
    raise ValueError(
        f'schedule.{given[0]} belongs to a cyclic_triangular schedule (as '
        f'in PyTorch\'s CyclicLR), got schedule.name={fields["name"]!r}.')
  if not fields.get('cycle_momentum'):
    return None
  return plrs_jax.cyclic_momentum_schedule(
      fields.get('base_momentum', 0.8), fields.get('max_momentum', 0.9),
      fields['up_steps'], fields.get('down_steps'))


# The optimizers with a recipe of this project; any optax name works too.
OPTIMIZERS = config_validation.OPTIMIZERS


def _two_regime_kwargs(config: ml_collections.ConfigDict,
                       steps_per_epoch: int) -> dict[str, Any]:
  return durations.in_steps(
      {k: v for k, v in config.two_regime.items() if v is not None},
      'two_regime', steps_per_epoch=steps_per_epoch,
      num_steps=config.num_epochs * steps_per_epoch)


def _optax_factory(name: str):
  factory = optax
  for part in name.split('.'):
    factory = getattr(factory, part, None)
  if not callable(factory) or name.startswith('_'):
    raise ValueError(
        f'unknown optimizer {name!r}: name one of {", ".join(OPTIMIZERS)}, '
        "or a function of optax such as 'adam', 'lamb' or "
        "'contrib.reduce_on_plateau'.")
  return factory


SCHEDULE_FREE_SGD = 'contrib.schedule_free_sgd'


def applied_rate(optimizer: str, schedule: optax.Schedule) -> optax.Schedule:
  """The rate the optimizer named `optimizer` steps at with `schedule`:
  `schedule(count + 1)` for `schedule_free_sgd`, else `schedule`."""
  if optimizer == SCHEDULE_FREE_SGD:
    return lambda count: schedule(count + 1)
  return schedule


def schedule_free_sgd(schedule: optax.Schedule, b1: float = 0.9,
                      weight_decay: float | None = None,
                      weight_lr_power: float = 2.0,
                      state_dtype: Any = None
                      ) -> optax.GradientTransformationExtraArgs:
  """Schedule-free SGD as its authors' `SGDScheduleFree` steps (PyPI
  `schedulefree` 1.4.1, `r=0`): step k (from 0) moves z at `schedule(k + 1)`
  and weighs z_{k+1} into the average x by `max(schedule(1..k+1))^power`,
  with x the evaluation point (`optax.contrib.schedule_free_eval_params`).
  With a warmup from 0 over W steps, the rate of step k is (k + 1) / W of the
  peak, as there. `optax.contrib.schedule_free_sgd` reads the schedule at k
  for its step and at k + 1 for its weight: its first step moves nothing.
    >>> tx = schedule_free_sgd(optax.linear_schedule(0.0, 1.0, 15))
    >>> params = jnp.zeros(1)
    >>> _, state = tx.update(jnp.ones(1), tx.init(params), params)
    >>> round(float(state.z[0]), 4)  # -(1 / 15) x gradient 1.
    -0.0667
  """
  step = optax.sgd(applied_rate(SCHEDULE_FREE_SGD, schedule))
  if weight_decay is not None:
    step = optax.chain(optax.add_decayed_weights(weight_decay), step)
  return optax.contrib.schedule_free(step, learning_rate=schedule, b1=b1,
                                     weight_lr_power=weight_lr_power,
                                     state_dtype=state_dtype)


class Reported(NamedTuple):
  """The state of `reporting`: the wrapped optimizer's, and its report."""
  count: jax.Array
  inner_state: Any
  report: dict[str, jax.Array]


def reporting(tx: optax.GradientTransformation,
              report: Callable[[jax.Array, Any, Any], dict[str, Any]]
              ) -> optax.GradientTransformationExtraArgs:
  """`tx`, its state also holding `report(count, state before, state after)`
  of its last update, which `engine.train_step` logs.
    >>> tx = reporting(optax.sgd(0.1), lambda count, old, new: {'lr': 0.1})
    >>> _, state = tx.update({'w': 1.0}, tx.init({'w': 0.0}))
    >>> state.report['lr'], int(state.count)
    (Array(0.1, dtype=float32), 1)
  """
  tx = optax.with_extra_args_support(tx)

  def fixed(count, old, new):
    # Strong types, so that the report's types do not change with the step.
    return {k: jnp.asarray(v, jnp.asarray(v).dtype)
            for k, v in report(count, old, new).items()}

  def init(params):
    inner = tx.init(params)
    count = jnp.zeros([], jnp.int32)
    return Reported(count, inner, fixed(count, inner, inner))

  def update(updates, state, params=None, **extra_args):
    updates, inner = tx.update(updates, state.inner_state, params,
                               **extra_args)
    return updates, Reported(optax.safe_increment(state.count), inner,
                             fixed(state.count, state.inner_state, inner))

  return optax.GradientTransformationExtraArgs(init, update)


def create_optimizer(config: ml_collections.ConfigDict,
                     schedule: optax.Schedule, steps_per_epoch: int = 0, *,
                     initial_loss: float | jax.Array | None = None,
                     num_classes: int | None = None
                     ) -> optax.GradientTransformationExtraArgs:
  """The optimizer `config.optimizer` names, reporting 'lr', its rate; raises
  ValueError or TypeError. 'mlr_snet' needs `initial_loss` and `num_classes`.
    >>> from train.configs import default
    >>> config = default.get_config()
    >>> config.optimizer, config.optimizer_kwargs = 'adam', {'b2': 0.99}
    >>> tx = create_optimizer(config, optax.constant_schedule(1e-3))
    >>> updates, state = tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
    >>> updates, state.report['lr']
    (Array([-0.001, -0.001], dtype=float32), Array(0.001, dtype=float32))
  """
  name = config.get('optimizer', 'sgd')
  kwargs = dict(config.get('optimizer_kwargs', {}))
  momentum, nesterov = config.momentum, config.get('nesterov', False)
  if kwargs and name in OPTIMIZERS:
    raise ValueError(f'optimizer_kwargs are for optax optimizers; {name!r} '
                     f'takes its settings elsewhere, got {kwargs}.')
  cyclic = _cyclic_momentum(config, steps_per_epoch)
  if cyclic is not None and (momentum or name in ('two_regime', 'mlr_snet')):
    raise ValueError(
        'schedule.cycle_momentum cycles the sgd optimizer\'s momentum between '
        'base_momentum and max_momentum (as PyTorch\'s CyclicLR): set '
        f'momentum=0, got optimizer={name!r}, momentum={momentum}.')
  if name in ('mlr_snet', 'two_regime') and (momentum or nesterov):
    raise ValueError(
        f'{name} runs plain SGD ' + (
            'at the learnt rate, as its nets are meta-trained'
            if name == 'mlr_snet' else 'before the switch (momentum only '
            'rescales the rate in the large-step regime)') +
        ': set momentum=0 and nesterov=False, got '
        f'momentum={momentum}, nesterov={nesterov}.')
  if name == 'mlr_snet':
    return reporting(optax.chain(
        optax.add_decayed_weights(config.weight_decay),
        _mlr_snet(config, steps_per_epoch, initial_loss, num_classes)),
        lambda count, old, new: {'lr': _state_field(new, 'rate'),
                                 'gamma': _state_field(new, 'gamma')})
  if name == 'two_regime':
    rate = planned_rate(config, schedule, steps_per_epoch)
    return reporting(plrs_jax.two_regime_sgd_adam(
        schedule, weight_decay=config.weight_decay,
        **_two_regime_kwargs(config, steps_per_epoch)),
        lambda count, old, new: {'lr': rate(count),
                                 'regime': _state_field(new, 'regime')})
  factory = None if name in OPTIMIZERS else _optax_factory(name)
  takes_rate = factory is not None and (
      'learning_rate' in inspect.signature(factory).parameters)
  rate = applied_rate(name, schedule)
  if takes_rate:
    if momentum or nesterov or cyclic is not None:
      raise ValueError(
          f'momentum and nesterov are the sgd optimizer\'s; for {name!r} set '
          'momentum=0 and nesterov=False, and pass its own arguments in '
          'optimizer_kwargs.')
    optimizer = (schedule_free_sgd(schedule, **kwargs)
                 if name == SCHEDULE_FREE_SGD else
                 factory(learning_rate=schedule, **kwargs))
  elif cyclic is not None:
    optimizer = optax.inject_hyperparams(optax.sgd)(
        learning_rate=schedule, momentum=cyclic, nesterov=nesterov)
  else:
    optimizer = optax.sgd(schedule, momentum=momentum or None,
                          nesterov=nesterov)
  if config.weight_decay:
    optimizer = optax.chain(optax.add_decayed_weights(config.weight_decay),
                            optimizer)
  if name == 'autodrop':
    optimizer = optax.chain(optimizer, plrs_jax.scale_by_autodrop(
        steps_per_epoch, **dict(config.autodrop)))
  elif factory is not None and not takes_rate:
    optimizer = optax.chain(optimizer, factory(**kwargs))

  def report(count, old, new):
    # A transform that scales the rate (AutoDrop, a plateau's) keeps its
    # factor as `scale`: the update applied the one of the state before.
    scale = _state_field(old, 'scale')
    if scale is None:
      return {'lr': rate(count)}
    autodrop = optax.tree.get(new, 'AutoDropState')
    return {'lr': rate(count) * scale,
            'optimizer_scale': jnp.asarray(_state_field(new, 'scale'),
                                           jnp.float32),
            **({} if autodrop is None else {
                'angular_velocity': autodrop.angular_velocity,
                'threshold': autodrop.threshold,
                'drops': autodrop.num_drops})}

  return reporting(optimizer, report)


def _state_field(opt_state, name: str):
  # A NamedTuple's field only: not BatchNorm's 'scale' in a tree it holds.
  return optax.tree.get(opt_state, name, filtering=lambda path, _: isinstance(
      path[-1], optax.tree_utils.NamedTupleKey))


def needs_initial_loss(config: ml_collections.ConfigDict) -> bool:
  """Whether `create_optimizer` needs the initial loss (MLR-SNet's gamma).
    >>> from train.configs import default
    >>> needs_initial_loss(default.get_config())
    False
  """
  return config.get('optimizer', 'sgd') == 'mlr_snet'


def switches_with_length(config: ml_collections.ConfigDict) -> bool:
  """Whether the optimizer changes at fractions of the run's length
  (MLR-SNet's snapshots), so that a longer run is another run."""
  return (needs_initial_loss(config)
          and config.mlr_snet.transfer == 'snapshots')


def _mlr_snet(config: ml_collections.ConfigDict, steps_per_epoch: int,
              initial_loss: Any, num_classes: int | None):
  # The last net throughout ('frozen'), or each of k in turn for
  # `num_epochs // k` epochs ('snapshots', the official transfer).
  if initial_loss is None or num_classes is None:
    raise TypeError('mlr_snet sets gamma from the initial loss: pass '
                    'initial_loss= and num_classes= (see needs_initial_loss).')
  nets = mlr_snet_file.load(config.mlr_snet.checkpoint)
  gamma = plrs_jax.mlr_snet_gamma(initial_loss, num_classes)
  count = len(nets.snapshots)
  if config.mlr_snet.transfer == 'frozen' or count == 1:
    return plrs_jax.mlr_snet(nets.snapshots[-1], gamma=gamma)
  period = config.num_epochs // count
  if not period:
    raise ValueError(
        f"transfer='snapshots' runs each of the {count} snapshots for "
        f'num_epochs // {count} epochs: set num_epochs >= {count}, got '
        f'{config.num_epochs}.')
  return plrs_jax.mlr_snet(
      nets.snapshots, gamma=gamma, num_classes=num_classes,
      switch_steps=[j * period * steps_per_epoch for j in range(1, count)])


def planned_rate(config: ml_collections.ConfigDict, schedule: optax.Schedule,
                 steps_per_epoch: int) -> optax.Schedule | None:
  """The rate of each step where the step alone decides it (None where the
  run does: AutoDrop, MLR-SNet, an optax transform such as reduce_on_plateau).
    >>> from train.configs import default
    >>> planned_rate(default.get_config(), lambda count: 0.1, 10)(5)
    0.1
  """
  name = config.get('optimizer', 'sgd')
  if name == 'two_regime':
    kwargs = _two_regime_kwargs(config, steps_per_epoch)
    return lambda count: jnp.where(
        count < kwargs['switch_step'], schedule(count),
        jnp.float32(kwargs['small_learning_rate']))
  if name == 'sgd' or name not in OPTIMIZERS and 'learning_rate' in (
      inspect.signature(_optax_factory(name)).parameters):
    return applied_rate(name, schedule)
  return None
