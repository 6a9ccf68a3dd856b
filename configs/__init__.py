"""Shipped configuration (TOML data only), installed as ``softphone.configs`` so the embedded
defaults are found with importlib.resources wherever the package is installed."""
