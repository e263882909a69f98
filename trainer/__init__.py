"""Trainer: streams rating matrices out of the DuckDB warehouse, trains an autoencoder, writes predictions back."""
