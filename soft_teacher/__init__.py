"""Soft Teacher semi-supervised object detection for Detectron2.

Importing this package registers the ``SoftTeacher`` meta-architecture, the
built-in datasets and the data components with Detectron2's registries. Entry points
import it before Detectron2, so that Detectron2's import-time warnings are filtered.
``soft_teacher.visualize`` (pictures of pseudo labels) is not imported here: import it by its full name.
"""
import warnings

# Detectron2 applies torch.jit.script at import time, which this torch deprecates with a FutureWarning
# that no user can act on; only those warnings, and only during Detectron2's import, are silenced.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    import detectron2.engine  # noqa: F401  (imports detectron2.modeling, where the scripting happens)

from . import data, modeling  # noqa: F401  (registration side effects)
from .config import add_soft_teacher_config, get_cfg

__all__ = ["add_soft_teacher_config", "get_cfg"]
__version__ = "0.1.0"
