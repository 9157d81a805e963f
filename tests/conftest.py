"""Fixtures shared by the tests; plain helpers are in helpers.py."""
import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

from helpers import make_tiny_cfg  # noqa: E402  (after the thread setting)


@pytest.fixture
def tiny_cfg():
    """:func:`helpers.make_tiny_cfg`: a SoftTeacher config that builds and runs fast on a CPU."""
    return make_tiny_cfg()
