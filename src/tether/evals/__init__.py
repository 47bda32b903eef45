"""Datasets, metrics and runners that turn quality into numbers."""
