"""What the benchmarks and the demo run; ``tools/benchmark_*.py`` and ``tools/run_demo.py`` are their command lines.

``branch_runs`` trains ``train_net.py`` runs side by side (a Soft Teacher run branching from its
supervised twin) and reads their ``metrics.json``; ``accuracy`` is the accuracy benchmark on the
shapes set, ``speed`` the speed benchmark, ``mapper`` the unlabeled mapper's throughput, ``report``
their shared results files; ``demo`` is ``make demo``. Nothing is imported here (``import soft_teacher``
does not import this package): import each module by its full name.
"""
