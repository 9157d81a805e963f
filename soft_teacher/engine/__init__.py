"""The semi-supervised trainer, its hooks and checkpointing."""
from soft_teacher.modeling.soft_teacher import is_soft_teacher_state_dict

from .checkpoint import SoftTeacherCheckpointer, detector_state_dict
from .command_line import ConfigError, launch_on_device, load_config
from .hooks import NoPseudoBoxWarning, SkippedUnlabeledImages, TeacherEMA
from .teacher_student import is_teacher_student, unwrap_model
from .train_loop import FiniteLossAMPTrainer, FiniteLossSimpleTrainer, check_losses_finite
from .trainer import SoftTeacherTrainer, is_semi_supervised, models_to_evaluate, verify_expected_results
from .writers import PseudoLabelPrinter

__all__ = [
    "ConfigError",
    "FiniteLossAMPTrainer",
    "FiniteLossSimpleTrainer",
    "NoPseudoBoxWarning",
    "PseudoLabelPrinter",
    "SkippedUnlabeledImages",
    "SoftTeacherCheckpointer",
    "SoftTeacherTrainer",
    "TeacherEMA",
    "check_losses_finite",
    "detector_state_dict",
    "is_semi_supervised",
    "is_soft_teacher_state_dict",
    "is_teacher_student",
    "launch_on_device",
    "load_config",
    "models_to_evaluate",
    "unwrap_model",
    "verify_expected_results",
]
