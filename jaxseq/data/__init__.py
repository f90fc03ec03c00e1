"""Data loaders, vocabularies and built-in data sets (no JAX models imported here)."""
