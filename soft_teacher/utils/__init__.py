"""Helpers the command-line tools share: reading and plotting a run's ``metrics.json``."""
from .metrics import METRICS_FILE, Series, load_metrics, metrics_records, plot_metrics, resolve_metrics_path

__all__ = ["METRICS_FILE", "Series", "load_metrics", "metrics_records", "plot_metrics", "resolve_metrics_path"]
