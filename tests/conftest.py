"""Test set-up: 8 simulated CPU devices, fixed before JAX starts its backend."""

import os

# Tests must see the same devices on every machine: force the CPU backend and
# split it into 8 devices so pmap tests run anywhere.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # pylint: disable=g-import-not-at-top

jax.config.update('jax_num_cpu_devices', 8)
