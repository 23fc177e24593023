"""The PLRS training application: Flax models, data, loop and CLI."""
