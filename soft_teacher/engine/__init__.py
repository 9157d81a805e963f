"""The semi-supervised trainer, its hooks and checkpointing (and loading a checkpoint for inference, or exporting
its teacher)."""
from soft_teacher.config import detector_config
from soft_teacher.modeling.soft_teacher import is_soft_teacher_state_dict

from .checkpoint import SoftTeacherCheckpointer, detector_state_dict, export_teacher, load_detector, load_model
from .command_line import ConfigError, launch_on_device, load_config
from .hooks import unwrap_model
from .trainer import SoftTeacherTrainer, is_semi_supervised, verify_expected_results

__all__ = [
    "ConfigError",
    "SoftTeacherCheckpointer",
    "SoftTeacherTrainer",
    "detector_config",
    "detector_state_dict",
    "export_teacher",
    "is_semi_supervised",
    "is_soft_teacher_state_dict",
    "launch_on_device",
    "load_config",
    "load_detector",
    "load_model",
    "unwrap_model",
    "verify_expected_results",
]
