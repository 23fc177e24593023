"""A config's schedule and optimizer ('sgd', 'two_regime', 'autodrop',
'mlr_snet' or optax's by name), each made by a builder that returns it,
reporting its rate through its state, with the rate it plans."""

from collections.abc import Callable
import functools
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
  (`durations.to_steps`), given the run's `total_steps` and `key` where it
  takes them and the config does not; a `total_steps` shorter than the run
  is a ConfigError.
    >>> schedule = create_schedule(
    ...     {'name': 'multistep', 'init_value': 0.1,
    ...      'boundaries_epochs': [2]}, key=jax.random.key(0),
    ...     steps_per_epoch=10, num_steps=30)
    >>> [round(float(schedule(step)), 6) for step in (19, 20)]
    [0.1, 0.01]
  """
  kwargs = durations.to_steps(schedule_config, 'schedule',
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
  # An unknown name takes nothing here; plrs_jax.create_schedule says so.
  factory = plrs_jax.SCHEDULES.get(name, lambda: None)
  parameters = inspect.signature(factory).parameters
  for arg, value in (('total_steps', num_steps), ('key', key)):
    if arg in parameters:
      kwargs.setdefault(arg, value)
  return plrs_jax.create_schedule(name, **kwargs)


# A cyclic_triangular schedule's fields of the momentum (PyTorch's CyclicLR).
MOMENTUM_FIELDS = config_validation.MOMENTUM_FIELDS
# The optimizers with a recipe of this project; any optax name works too.
OPTIMIZERS = config_validation.OPTIMIZERS
SCHEDULE_FREE_SGD = 'contrib.schedule_free_sgd'


def _cyclic_momentum(config: ml_collections.ConfigDict,
                     steps_per_epoch: int) -> optax.Schedule | None:
  """The momentum of each step where the schedule cycles it, else None."""
  if not config.schedule.get('cycle_momentum'):
    return None
  fields = durations.to_steps(
      config.schedule, 'schedule', steps_per_epoch=steps_per_epoch,
      num_steps=config.num_epochs * steps_per_epoch)
  return plrs_jax.cyclic_momentum_schedule(
      fields.get('base_momentum', 0.8), fields.get('max_momentum', 0.9),
      fields['up_steps'], fields.get('down_steps'))


def _one_step_ahead(schedule: optax.Schedule) -> optax.Schedule:
  return lambda count: schedule(count + 1)


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
  step = optax.sgd(_one_step_ahead(schedule))
  if weight_decay is not None:
    step = optax.chain(optax.add_decayed_weights(weight_decay), step)
  return optax.contrib.schedule_free(step, learning_rate=schedule, b1=b1,
                                     weight_lr_power=weight_lr_power,
                                     state_dtype=state_dtype)


# report(count, state before, state after) of an update: name -> value.
Report = Callable[[jax.Array, Any, Any], dict[str, Any]]


class ReportingState(NamedTuple):
  """The state of `with_report`: the wrapped optimizer's, and its report."""
  count: jax.Array
  inner_state: Any
  report: dict[str, jax.Array]


def with_report(tx: optax.GradientTransformation,
                report: Report) -> optax.GradientTransformationExtraArgs:
  """`tx`, its state also holding `report(count, state before, state after)`
  of its last update, which `engine.train_step` logs.
    >>> tx = with_report(optax.sgd(0.1), lambda count, old, new: {'lr': 0.1})
    >>> _, state = tx.update({'w': 1.0}, tx.init({'w': 0.0}))
    >>> state.report['lr'], int(state.count)
    (Array(0.1, dtype=float32), 1)
  """
  tx = optax.with_extra_args_support(tx)

  def strongly_typed_report(count, old, new):
    # Strong types, so that the report's types do not change with the step.
    return {k: jnp.asarray(v, jnp.asarray(v).dtype)
            for k, v in report(count, old, new).items()}

  def init(params):
    inner = tx.init(params)
    count = jnp.zeros([], jnp.int32)
    return ReportingState(count, inner,
                          strongly_typed_report(count, inner, inner))

  def update(updates, state, params=None, **extra_args):
    updates, inner = tx.update(updates, state.inner_state, params,
                               **extra_args)
    report = strongly_typed_report(state.count, state.inner_state, inner)
    return updates, ReportingState(optax.safe_increment(state.count), inner,
                                   report)

  return optax.GradientTransformationExtraArgs(init, update)


def _is_named_tuple_field(path, _) -> bool:
  return isinstance(path[-1], optax.tree_utils.NamedTupleKey)


def _state_field(opt_state, name: str):
  # A NamedTuple's field only: not BatchNorm's 'scale' in a tree it holds.
  return optax.tree.get(opt_state, name, filtering=_is_named_tuple_field)


def _scaled_rate_report(rate: optax.Schedule) -> Report:
  """'lr': `rate`, times the factor a transform that scales the rate keeps
  as `scale` (AutoDrop, a plateau's), also reported with AutoDrop's state."""

  def report(count, old, new):
    # The update applied the factor of the state before.
    scale = _state_field(old, 'scale')
    if scale is None:
      return {'lr': rate(count)}
    new_scale = jnp.asarray(_state_field(new, 'scale'), jnp.float32)
    metrics = {'lr': rate(count) * scale, 'optimizer_scale': new_scale}
    autodrop = optax.tree.get(new, 'AutoDropState')
    if autodrop is not None:
      metrics.update(angular_velocity=autodrop.angular_velocity,
                     threshold=autodrop.threshold, drops=autodrop.num_drops)
    return metrics

  return report


class _Arguments(NamedTuple):
  """What a builder reads: `create_optimizer`'s arguments."""
  config: ml_collections.ConfigDict
  schedule: optax.Schedule
  steps_per_epoch: int
  initial_loss: Any = None
  num_classes: int | None = None


class _OptimizerAndRate(NamedTuple):
  """What a builder returns: the optimizer, reporting its rate, and the
  rate of each step where the step alone decides it, else None."""
  transformation: optax.GradientTransformationExtraArgs
  planned_rate: optax.Schedule | None


def _optimizer_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return dict(config.get('optimizer_kwargs', {}))


def _decayed(config: ml_collections.ConfigDict,
             tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`tx` after config.weight_decay's coupled decay, where it is set."""
  if not config.weight_decay:
    return tx
  return optax.chain(optax.add_decayed_weights(config.weight_decay), tx)


def _decayed_sgd(args: _Arguments) -> optax.GradientTransformation:
  """SGD at the schedule with the config's momentum, or the schedule's
  cyclic one, after the weight decay."""
  config = args.config
  nesterov = config.get('nesterov', False)
  cyclic = _cyclic_momentum(config, args.steps_per_epoch)
  if cyclic is None:
    sgd = optax.sgd(args.schedule, momentum=config.momentum or None,
                    nesterov=nesterov)
  else:
    sgd = optax.inject_hyperparams(optax.sgd)(
        learning_rate=args.schedule, momentum=cyclic, nesterov=nesterov)
  return _decayed(config, sgd)


def _sgd(args: _Arguments) -> _OptimizerAndRate:
  # Momentum, Nesterov's or the schedule's cyclic one: at the schedule.
  tx = _decayed_sgd(args)
  return _OptimizerAndRate(
      with_report(tx, _scaled_rate_report(args.schedule)), args.schedule)


def _autodrop(args: _Arguments) -> _OptimizerAndRate:
  # AutoDrop scales the rate as the run goes: no planned rate.
  sgd = _decayed_sgd(args)
  tx = optax.chain(sgd, plrs_jax.scale_by_autodrop(
      args.steps_per_epoch, **dict(args.config.autodrop)))
  return _OptimizerAndRate(
      with_report(tx, _scaled_rate_report(args.schedule)), None)


def _two_regime(args: _Arguments) -> _OptimizerAndRate:
  # Plain SGD at the schedule, then Adam at small_learning_rate.
  config, schedule = args.config, args.schedule
  kwargs = durations.to_steps(
      {k: v for k, v in config.two_regime.items() if v is not None},
      'two_regime', steps_per_epoch=args.steps_per_epoch,
      num_steps=config.num_epochs * args.steps_per_epoch)
  tx = plrs_jax.two_regime_sgd_adam(schedule, weight_decay=config.weight_decay,
                                    **kwargs)

  def rate(count):
    small_rate = jnp.float32(kwargs['small_learning_rate'])
    return jnp.where(count < kwargs['switch_step'], schedule(count),
                     small_rate)

  def report(count, old, new):
    return {'lr': rate(count), 'regime': _state_field(new, 'regime')}

  return _OptimizerAndRate(with_report(tx, report), rate)


def _mlr_snet(args: _Arguments) -> _OptimizerAndRate:
  # The last net throughout ('frozen'), or each of k in turn for
  # `num_epochs // k` epochs ('snapshots', the official transfer); its rate
  # is the net's, of the losses.
  config, num_classes = args.config, args.num_classes
  if args.initial_loss is None or num_classes is None:
    raise TypeError('mlr_snet sets gamma from the initial loss: pass '
                    'initial_loss= and num_classes= (see needs_initial_loss).')
  snapshots = mlr_snet_file.load(config.mlr_snet.checkpoint).snapshots
  gamma = plrs_jax.mlr_snet_gamma(args.initial_loss, num_classes)
  if config.mlr_snet.transfer == 'frozen' or len(snapshots) == 1:
    net = plrs_jax.mlr_snet(snapshots[-1], gamma=gamma)
  else:
    # config_validation checked that each snapshot gets an epoch or more.
    period = config.num_epochs // len(snapshots) * args.steps_per_epoch
    switch_steps = [j * period for j in range(1, len(snapshots))]
    net = plrs_jax.mlr_snet(snapshots, gamma=gamma, num_classes=num_classes,
                            switch_steps=switch_steps)
  tx = optax.chain(optax.add_decayed_weights(config.weight_decay), net)

  def report(count, old, new):
    return {'lr': _state_field(new, 'rate'),
            'gamma': _state_field(new, 'gamma')}

  return _OptimizerAndRate(with_report(tx, report), None)


def _schedule_free(args: _Arguments) -> _OptimizerAndRate:
  # The authors' steps (`schedule_free_sgd`), at the next step's rate.
  tx = schedule_free_sgd(args.schedule, **_optimizer_kwargs(args.config))
  rate = _one_step_ahead(args.schedule)
  return _OptimizerAndRate(
      with_report(_decayed(args.config, tx), _scaled_rate_report(rate)), rate)


def _optax_optimizer(factory: Callable[..., optax.GradientTransformation],
                     args: _Arguments) -> _OptimizerAndRate:
  # An optax optimizer that takes the schedule as its `learning_rate`.
  tx = factory(learning_rate=args.schedule,
               **_optimizer_kwargs(args.config))
  return _OptimizerAndRate(
      with_report(_decayed(args.config, tx),
                  _scaled_rate_report(args.schedule)), args.schedule)


def _after_sgd(factory: Callable[..., optax.GradientTransformation],
               args: _Arguments) -> _OptimizerAndRate:
  # An optax transform that takes no rate (reduce_on_plateau...) after SGD:
  # it may scale the rate as the run goes, so none is planned.
  sgd = _decayed_sgd(args)
  tx = optax.chain(sgd, factory(**_optimizer_kwargs(args.config)))
  return _OptimizerAndRate(
      with_report(tx, _scaled_rate_report(args.schedule)), None)


_Builder = Callable[[_Arguments], _OptimizerAndRate]
# The builder of each optimizer with a recipe (OPTIMIZERS) and of
# schedule-free SGD; `_builder` finds optax's others by name.
_BUILDERS: dict[str, _Builder] = {
    'sgd': _sgd, 'two_regime': _two_regime, 'autodrop': _autodrop,
    'mlr_snet': _mlr_snet, SCHEDULE_FREE_SGD: _schedule_free}


def _builder(config: ml_collections.ConfigDict) -> _Builder:
  name = config.get('optimizer', 'sgd')
  if name in _BUILDERS:
    return _BUILDERS[name]
  factory = config_validation.optax_function(name)
  if factory is None:
    raise ValueError(
        f'unknown optimizer {name!r}: name one of {", ".join(OPTIMIZERS)}, '
        "or a function of optax such as 'adam', 'lamb' or "
        "'contrib.reduce_on_plateau'.")
  if config_validation.takes_learning_rate(name):
    return functools.partial(_optax_optimizer, factory)
  return functools.partial(_after_sgd, factory)


def create_optimizer(config: ml_collections.ConfigDict,
                     schedule: optax.Schedule, steps_per_epoch: int = 0, *,
                     initial_loss: float | jax.Array | None = None,
                     num_classes: int | None = None
                     ) -> optax.GradientTransformationExtraArgs:
  """The optimizer `config.optimizer` names, reporting 'lr', its rate; raises
  ValueError or TypeError. 'mlr_snet' needs `initial_loss` and `num_classes`.
  The config is one `config_validation.validate` passed: that checks its
  fields against each other.
    >>> from train.configs import default
    >>> config = default.get_config()
    >>> config.optimizer, config.optimizer_kwargs = 'adam', {'b2': 0.99}
    >>> tx = create_optimizer(config, optax.constant_schedule(1e-3))
    >>> updates, state = tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
    >>> updates, state.report['lr']
    (Array([-0.001, -0.001], dtype=float32), Array(0.001, dtype=float32))
  """
  args = _Arguments(config, schedule, steps_per_epoch, initial_loss,
                    num_classes)
  return _builder(config)(args).transformation


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


def planned_rate(config: ml_collections.ConfigDict, schedule: optax.Schedule,
                 steps_per_epoch: int) -> optax.Schedule | None:
  """The rate of each step where the step alone decides it (None where the
  run does: AutoDrop, MLR-SNet, an optax transform such as reduce_on_plateau),
  as the builder of `create_optimizer` plans it.
    >>> from train.configs import default
    >>> planned_rate(default.get_config(), lambda count: 0.1, 10)(5)
    0.1
  """
  if needs_initial_loss(config):
    return None  # MLR-SNet's nets decide it; they are built with L_0.
  args = _Arguments(config, schedule, steps_per_epoch)
  return _builder(config)(args).planned_rate
