"""A config's schedule and optimizer, built by name.

`create_schedule` builds any schedule of `plrs_jax.create_schedule` from a
config section, with fields in epochs converted to steps. `create_optimizer`
builds `config.optimizer`:

- 'sgd' (the default): SGD as in PyTorch and the paper, weight decay added
  to the gradient (coupled), then momentum (optionally Nesterov's); a
  `cyclic_triangular` schedule with `cycle_momentum=True` cycles the
  momentum opposite to the rate between its `base_momentum` and
  `max_momentum`, as PyTorch's CyclicLR does by default;
- 'two_regime': `plrs_jax.two_regime_sgd_adam`, with `config.two_regime`;
- 'autodrop': the 'sgd' optimizer, then `plrs_jax.scale_by_autodrop` with
  `config.autodrop`;
- 'mlr_snet': plain SGD with coupled weight decay at the rate of a
  meta-trained MLR-SNet (`plrs_jax.mlr_snet`), with `config.mlr_snet`; the
  schedule is not used, and gamma is set by the initial loss the caller
  measures (`needs_initial_loss`);
- any other name is looked up in optax (dots for submodules,
  'contrib.reduce_on_plateau'), with `config.optimizer_kwargs` as keyword
  arguments. An optax optimizer (a function with a `learning_rate`
  argument, such as 'adam' or 'lamb') runs at the schedule's rate, after the
  coupled weight decay; any other transform (such as
  'contrib.reduce_on_plateau') is chained after the 'sgd' optimizer.

The train step passes `params`, `loss=` and `value=` to every update
(train/engine.py), so transforms that read them work as they are.
`optimizer_metrics` reads what a transform's state exposes for the logs.
"""

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

import plrs_jax
from train import config_validation
from train import mlr_snet_file


def in_steps(fields: ml_collections.ConfigDict | dict,
             steps_per_epoch: int) -> dict[str, Any]:
  """`fields` as a dict, each `<arg>_epochs` replaced by `<arg>` in steps.

  Lists are converted element-wise.

  Example:
    >>> in_steps({'value': 0.1, 'boundaries_epochs': [1, 2.5]}, 10)
    {'value': 0.1, 'boundaries': [10, 25]}
  """
  kwargs = dict(fields)
  for field in list(kwargs):
    if field.endswith('_epochs'):
      value = kwargs.pop(field)
      arg = field[:-len('_epochs')]
      if isinstance(value, (list, tuple)):
        kwargs[arg] = [int(round(v * steps_per_epoch)) for v in value]
      else:
        kwargs[arg] = int(round(value * steps_per_epoch))
  return kwargs


def create_schedule(
    schedule_config: ml_collections.ConfigDict | dict,
    *,
    key: jax.Array,
    steps_per_epoch: int,
    num_steps: int,
) -> optax.Schedule:
  """Builds the configured schedule, converting epochs to steps.

  `schedule_config.name` picks a schedule of `plrs_jax.create_schedule`; the
  other fields are its arguments, with two conveniences: a field `<arg>_epochs`
  sets `<arg>` to that many epochs in steps (lists element-wise), and a
  schedule that takes `total_steps` or `key` gets the run's length and key
  unless the config sets them.

  Args:
    schedule_config: `name` plus the schedule's arguments.
    key: the run's schedule key.
    steps_per_epoch: steps in one epoch.
    num_steps: steps in the whole run.

  Returns:
    The schedule.

  Example:
    >>> schedule = create_schedule(
    ...     {'name': 'multistep', 'init_value': 0.1,
    ...      'boundaries_epochs': [2]}, key=jax.random.key(0),
    ...     steps_per_epoch=10, num_steps=30)
    >>> [round(float(schedule(step)), 6) for step in (19, 20)]
    [0.1, 0.01]
  """
  kwargs = in_steps(schedule_config, steps_per_epoch)
  name = kwargs.pop('name')
  for field in MOMENTUM_FIELDS:  # The optimizer's, see `create_optimizer`.
    kwargs.pop(field, None)
  parameters = inspect.signature(
      plrs_jax.SCHEDULES.get(name, lambda: None)).parameters
  if 'total_steps' in parameters:
    kwargs.setdefault('total_steps', num_steps)
  if 'key' in parameters:
    kwargs.setdefault('key', key)
  return plrs_jax.create_schedule(name, **kwargs)


# Fields of a cyclic_triangular schedule that set the momentum, not the rate,
# as in PyTorch's CyclicLR.
MOMENTUM_FIELDS = ('cycle_momentum', 'base_momentum', 'max_momentum')


def _cyclic_momentum(config: ml_collections.ConfigDict,
                     steps_per_epoch: int) -> optax.Schedule | None:
  """The momentum schedule of `config.schedule`, or None for none."""
  fields = in_steps(config.schedule, steps_per_epoch)
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
  """config.two_regime's fields that are set, epochs converted to steps."""
  return in_steps({k: v for k, v in config.two_regime.items()
                   if v is not None}, steps_per_epoch)


def _optax_factory(name: str):
  """optax's function `name` ('adam', 'contrib.reduce_on_plateau')."""
  factory = optax
  for part in name.split('.'):
    factory = getattr(factory, part, None)
  if not callable(factory) or name.startswith('_'):
    raise ValueError(
        f'unknown optimizer {name!r}: name one of {", ".join(OPTIMIZERS)}, '
        "or a function of optax such as 'adam', 'lamb' or "
        "'contrib.reduce_on_plateau'.")
  return factory


def create_optimizer(config: ml_collections.ConfigDict,
                     schedule: optax.Schedule,
                     steps_per_epoch: int = 0, *,
                     initial_loss: float | jax.Array | None = None,
                     num_classes: int | None = None
                     ) -> optax.GradientTransformation:
  """The optimizer `config.optimizer` names, at the schedule's rate.

  See the module docstring for the names.

  Args:
    config: the run's config.
    schedule: the learning-rate schedule.
    steps_per_epoch: steps in one epoch (for epoch-valued fields and
      AutoDrop's epoch).
    initial_loss: for 'mlr_snet' (`needs_initial_loss`), L_0, the mean
      training loss of the initial model, which sets gamma (may be traced);
      ignored otherwise.
    num_classes: for 'mlr_snet', the number of classes.

  Returns:
    The optimizer.

  Raises:
    ValueError, TypeError: a field the optimizer cannot use.

  Example:
    >>> from train.configs import default
    >>> config = default.get_config()
    >>> config.optimizer = 'adam'
    >>> config.optimizer_kwargs = {'b2': 0.99}
    >>> tx = create_optimizer(config, optax.constant_schedule(1e-3))
    >>> updates, _ = tx.update({'w': jnp.ones(2)}, tx.init({'w': jnp.ones(2)}))
    >>> updates['w']
    Array([-0.001, -0.001], dtype=float32)
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
  if name == 'mlr_snet':
    if momentum or nesterov:
      raise ValueError(
          'mlr_snet runs plain SGD at the learnt rate, as its nets are '
          'meta-trained: set momentum=0 and nesterov=False, got '
          f'momentum={momentum}, nesterov={nesterov}.')
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay),
        _mlr_snet(config, steps_per_epoch, initial_loss, num_classes))
  if name == 'two_regime':
    if momentum or nesterov:
      raise ValueError(
          'two_regime runs plain SGD before the switch (momentum only '
          'rescales the rate in the large-step regime): set momentum=0 and '
          f'nesterov=False, got momentum={momentum}, nesterov={nesterov}.')
    return plrs_jax.two_regime_sgd_adam(
        schedule, weight_decay=config.weight_decay,
        **_two_regime_kwargs(config, steps_per_epoch))
  factory = None if name in OPTIMIZERS else _optax_factory(name)
  takes_rate = factory is not None and (
      'learning_rate' in inspect.signature(factory).parameters)
  if takes_rate:
    if momentum or nesterov or cyclic is not None:
      raise ValueError(
          f'momentum and nesterov are the sgd optimizer\'s; for {name!r} set '
          'momentum=0 and nesterov=False, and pass its own arguments in '
          'optimizer_kwargs.')
    optimizer = factory(learning_rate=schedule, **kwargs)
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
    return optax.chain(optimizer, plrs_jax.scale_by_autodrop(
        steps_per_epoch, **dict(config.autodrop)))
  if factory is not None and not takes_rate:
    return optax.chain(optimizer, factory(**kwargs))
  return optimizer


def needs_initial_loss(config: ml_collections.ConfigDict) -> bool:
  """Whether `create_optimizer` needs the initial loss (MLR-SNet's gamma).

  Example:
    >>> from train.configs import default
    >>> needs_initial_loss(default.get_config())
    False
  """
  return config.get('optimizer', 'sgd') == 'mlr_snet'


def rate_depends_on_run(config: ml_collections.ConfigDict) -> bool:
  """Whether the rates are known only as the run goes, not from the
  schedule: AutoDrop and optax transforms such as reduce_on_plateau scale
  it, MLR-SNet replaces it. Their rates are the logged ones.

  Example:
    >>> from train.configs import default
    >>> config = default.get_config()
    >>> config.optimizer = 'mlr_snet'
    >>> rate_depends_on_run(config)
    True
  """
  name = config.get('optimizer', 'sgd')
  if name in ('sgd', 'two_regime'):
    return False
  if name in OPTIMIZERS:
    return True
  return 'learning_rate' not in inspect.signature(
      _optax_factory(name)).parameters


def switches_with_length(config: ml_collections.ConfigDict) -> bool:
  """Whether the optimizer changes at fractions of the run's length
  (MLR-SNet's snapshots), so that a longer run is another run."""
  return (needs_initial_loss(config)
          and config.mlr_snet.transfer == 'snapshots')


def _mlr_snet(config: ml_collections.ConfigDict, steps_per_epoch: int,
              initial_loss: Any, num_classes: int | None):
  """`plrs_jax.mlr_snet` with the nets and transfer of `config.mlr_snet`.

  'frozen' runs the last snapshot for the whole run; 'snapshots' runs each
  of the k snapshots in turn, switching after every `num_epochs // k`
  epochs, as the official transfer (k = 3: epochs num_epochs // 3 and
  num_epochs // 3 * 2). gamma comes from `initial_loss`.
  """
  if initial_loss is None or num_classes is None:
    raise TypeError('mlr_snet sets gamma from the initial loss: pass '
                    'initial_loss= and num_classes= (see needs_initial_loss).')
  transfer = config.mlr_snet.transfer
  if transfer not in config_validation.TRANSFERS:
    raise ValueError(f'mlr_snet.transfer={transfer!r} must be one of '
                     f'{config_validation.TRANSFERS}.')
  nets = mlr_snet_file.load(config.mlr_snet.checkpoint)
  gamma = plrs_jax.mlr_snet_gamma(initial_loss, num_classes)
  count = len(nets.snapshots)
  if transfer == 'frozen' or count == 1:
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


def optimizer_rate(config: ml_collections.ConfigDict, schedule: optax.Schedule,
                   steps_per_epoch: int) -> optax.Schedule:
  """The rate of each step: the schedule's, or Adam's after a switch.

  A scale that depends on the run, not the step (AutoDrop's, a plateau's) is
  multiplied in by the train step, from `optimizer_metrics`.

  Example:
    >>> from train.configs import default
    >>> config = default.get_config()
    >>> rate = optimizer_rate(config, optax.constant_schedule(0.1), 10)
    >>> float(rate(5))
    0.1
  """
  if config.get('optimizer', 'sgd') != 'two_regime':
    return schedule
  kwargs = _two_regime_kwargs(config, steps_per_epoch)
  return lambda count: jnp.where(
      count < kwargs['switch_step'], schedule(count),
      jnp.float32(kwargs['small_learning_rate']))


def _states(opt_state) -> list[Any]:
  """The named states inside an optimizer state, outermost first."""
  found = []

  def visit(node) -> bool:
    if isinstance(node, tuple) and hasattr(node, '_fields'):
      found.append(node)
    return False  # Look inside it too.

  jax.tree.leaves(opt_state, is_leaf=visit)
  return found


def optimizer_metrics(opt_state) -> dict[str, jax.Array]:
  """What an optimizer with a state of its own reports, for the logs.

  AutoDrop: `optimizer_scale` (the factor on the schedule's rate),
  `angular_velocity` and `threshold` (degrees; the angle is NaN until its
  third epoch) and `drops`; two-regime: `regime` (0 while SGD runs, 1 once
  Adam has taken over); MLR-SNet: `lr`, the rate of its last update (which
  replaces the schedule's in the step's metrics), and `gamma`; any other
  transform whose state has a `scale` (such as
  optax.contrib.reduce_on_plateau): `optimizer_scale`. Empty for plain SGD.

  Example:
    >>> tx = optax.chain(optax.sgd(0.1), optax.contrib.reduce_on_plateau())
    >>> optimizer_metrics(tx.init(jnp.zeros(2)))
    {'optimizer_scale': Array(1., dtype=float32)}
  """
  metrics = {}
  for state in _states(opt_state):
    if isinstance(state, plrs_jax.AutoDropState):
      metrics.update(optimizer_scale=state.scale,
                     angular_velocity=state.angular_velocity,
                     threshold=state.threshold, drops=state.num_drops)
    elif isinstance(state, plrs_jax.TwoRegimeState):
      metrics['regime'] = state.regime
    elif isinstance(state, plrs_jax.MLRSNetState):
      metrics.update(lr=state.rate, gamma=state.gamma)
    elif 'scale' in state._fields:
      metrics['optimizer_scale'] = jnp.asarray(state.scale, jnp.float32)
  return metrics
