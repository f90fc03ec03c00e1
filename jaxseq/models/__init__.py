"""Flax linen models and decoding."""
