"""What the user-facing command-line tools in ``tools/`` run, so that each tool only parses its arguments and prints.

``metrics`` reads (the one reader of ``metrics.json``) and plots a run's scalars; ``visualize`` draws
pseudo labels; ``checkpoints`` loads a checkpoint or exports its teacher; ``measure`` samples and
tabulates the offline pseudo-label measurement. The benchmarks and the demo are :mod:`soft_teacher.benchmark`.
Only ``metrics`` is imported here: the others are imported by their full name.
"""
from .metrics import METRICS_FILE, Series, load_metrics, metrics_records, plot_metrics, resolve_metrics_path

__all__ = ["METRICS_FILE", "Series", "load_metrics", "metrics_records", "plot_metrics", "resolve_metrics_path"]
