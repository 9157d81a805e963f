"""Fixtures shared by the tests; plain helpers are in helpers.py.

The repository's ``tools/`` folder goes on ``sys.path`` first, as it is for a script run as ``python tools/x.py``,
so that tests import a tool's module by its plain name (``import branch_runs``, ``import plot_metrics``).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))

import pytest  # noqa: E402  (after the sys.path setting)
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

from helpers import make_tiny_cfg  # noqa: E402  (after the thread setting)


@pytest.fixture
def tiny_cfg():
    """:func:`helpers.make_tiny_cfg`: a SoftTeacher config that builds and runs fast on a CPU."""
    return make_tiny_cfg()
