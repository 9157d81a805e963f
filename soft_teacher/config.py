"""Config keys of soft-teacher-d2.

``add_soft_teacher_config(cfg)`` adds every key the method needs to a Detectron2
``CfgNode``; defaults are the paper's (Xu et al., ICCV 2021) reference settings.
Batch sizes follow Detectron2's convention: totals over all GPUs, scaled with
``SOLVER.REFERENCE_WORLD_SIZE``.
"""
import difflib
import re
from typing import List, Optional, Sequence

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as _get_detectron2_cfg

EVAL_MODELS = ("teacher", "student", "both")
UNSUP_LOSSES = ("rpn", "roi_cls", "roi_reg")
# "roi_objectness": the ROI classification loss with the pseudo boxes' classes dropped (see
# modeling/unsup_losses.py soft_weighted_cls_loss), in place of "roi_cls"; the shapes 1% config uses it.
UNSUP_LOSS_NAMES = UNSUP_LOSSES + ("roi_objectness",)
PHOTOMETRIC_OPS = (
    "identity", "autocontrast", "equalize", "solarize", "color",
    "contrast", "brightness", "sharpness", "posterize",
)
GEOMETRIC_OPS = ("translate_x", "translate_y", "rotate", "shear")


def add_soft_teacher_config(cfg: CN) -> CN:
    """Add the Soft Teacher keys to ``cfg`` in place and return it."""
    cfg.SOFT_TEACHER = CN()
    st = cfg.SOFT_TEACHER
    # Teacher detections (after per-class NMS) with score >= this are the candidate pseudo boxes.
    st.INITIAL_SCORE_THRESH = 0.5
    # Candidates with score >= this are the ground truth of the student's RPN losses.
    st.RPN_PSEUDO_THRESH = 0.9
    # Candidates with score >= this are the ground truth of the soft-weighted ROI classification loss.
    st.CLS_PSEUDO_THRESH = 0.9
    # Candidates with box-jitter uncertainty < this are the ground truth of the ROI regression loss.
    st.REG_UNCERTAINTY_THRESH = 0.02
    # Jittered copies per candidate from which its uncertainty is measured (>= 2).
    st.JITTER_TIMES = 10
    # Std of the jitter offsets, as a fraction of the box width (x coordinates) / height (y coordinates).
    st.JITTER_SCALE = 0.06
    # Factor of every unsupervised loss (the paper's partial-COCO value; the full-COCO config sets its own).
    st.UNSUP_WEIGHT = 4.0
    # Unsupervised losses the student gets, a subset of UNSUP_LOSS_NAMES ("rpn" is both RPN losses; "roi_objectness" in
    # place of "roi_cls": the ROI classification loss without the pseudo boxes' classes, as in the shapes 1% config).
    st.UNSUP_LOSSES = UNSUP_LOSSES
    # Final EMA momentum of the teacher; it warms up from 0 (a copy of the student), see engine/hooks.py TeacherEMA.
    st.EMA_MOMENTUM = 0.999
    # Supervised-only iterations before the unsupervised losses start; the teacher is copied from the student
    # after the last one and not updated before.
    st.BURN_IN_ITERS = 0
    # Whether the student's forward on strong views updates BatchNorm running statistics (False: labeled images
    # alone set them, as they resemble inference images; frozen BN, as in the COCO configs, ignores this).
    st.STRONG_VIEW_BN_STATS = False
    # Model used by inference and --eval-only: "teacher", "student" or "both"; periodic evaluation reports both.
    st.EVAL_MODEL = "teacher"
    # Warn when no pseudo box passes the thresholds for this many iterations in a row (0 disables).
    st.NO_PSEUDO_BOX_WARN_ITERS = 200
    # Iterations over which the classification pseudo boxes' class shares are pooled (pseudo/class_share_*) and
    # compared with the labeled set's; a warning names a class above CLASS_SHARE_WARN_RATIO x its labeled share
    # over a full window (0: no warning, each iteration alone).
    st.CLASS_SHARE_WARN_ITERS = 200
    # The ratio of a class's pseudo-box share to its labeled share above which to warn: healthy shapes runs
    # reached 2.7x on an easily found class, a teacher gathering wrong classes into one 4.6-5.4x (BENCHMARKS.md).
    st.CLASS_SHARE_WARN_RATIO = 3.0

    # Unlabeled training sets (registered names); annotations they may carry are never trained on.
    cfg.DATASETS.TRAIN_UNLABELED = ()
    # Custom labeled COCO-format sets to register: ((name, json_file, image_root), ...).
    cfg.DATASETS.CUSTOM_COCO = ()
    # Custom unlabeled sets to register from plain image folders: ((name, image_folder), ...).
    cfg.DATASETS.CUSTOM_UNLABELED_FOLDERS = ()

    # Unlabeled images per iteration over all GPUs (SOLVER.IMS_PER_BATCH counts the labeled ones).
    cfg.SOLVER.IMS_PER_BATCH_UNLABELED = 32

    # Photometric ops of the labeled views and the student (strong) view; one is drawn per image.
    cfg.INPUT.PHOTOMETRIC_OPS = PHOTOMETRIC_OPS
    # Geometric ops of the student view, one drawn uniformly per image (the reference's odds: translate 1/2,
    # rotate 1/4, shear 1/4) and applied before or after the photometric op, at random.
    cfg.INPUT.STRONG_GEOMETRIC_OPS = GEOMETRIC_OPS
    # Largest translation of the student view, as a fraction of the image width/height.
    cfg.INPUT.STRONG_TRANSLATE_FRAC = 0.1
    # Largest rotation of the student view, in degrees.
    cfg.INPUT.STRONG_ROTATE_DEG = 30.0
    # Largest shear angle of the student view along x and along y, in degrees (factor tanh, as mmcv's shear).
    cfg.INPUT.STRONG_SHEAR_DEG = 30.0
    # Number of grey rectangles erased from the student view, drawn uniformly from this inclusive range.
    cfg.INPUT.ERASE_COUNT = (1, 4)
    # Each erased rectangle is r * height by r * width, r ~ U(0, this) per rectangle (< 1).
    cfg.INPUT.ERASE_MAX_FRAC = 0.2
    return cfg


def get_cfg() -> CN:
    """Detectron2's default config with the Soft Teacher keys added."""
    return add_soft_teacher_config(_get_detectron2_cfg())


def detector_config(cfg: CN) -> CN:
    """A copy of ``cfg`` that builds the plain detector inside a Soft Teacher model (student, teacher)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    return cfg


class UnknownConfigKeyError(KeyError):
    """A config file or command-line option names a key that does not exist."""

    def __str__(self) -> str:
        return self.args[0]


def _full_keys(node: CN, prefix: str = "") -> List[str]:
    keys = []
    for name, value in node.items():
        key = prefix + name
        keys.extend(_full_keys(value, key + ".") if isinstance(value, CN) else [key])
    return keys


def unknown_key_message(key: str, cfg: CN, source: str) -> str:
    """Say which key of ``source`` is unknown, and the closest existing keys."""
    close = difflib.get_close_matches(key, _full_keys(cfg), n=3, cutoff=0.85)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return f"Unknown config key '{key}' in {source}.{hint} Remove or correct it; see soft_teacher/config.py."


def merge_config(cfg: CN, config_file: Optional[str] = None, opts: Sequence[str] = ()) -> CN:
    """Merge a yaml file and ``KEY VALUE`` options into ``cfg``, naming any unknown key.

    yacs reports an unknown key as a bare ``KeyError``/``AssertionError``; this
    raises :class:`UnknownConfigKeyError` with the key, where it came from, and
    the closest existing keys.
    """
    if config_file:
        try:
            cfg.merge_from_file(config_file)
        except KeyError as err:
            match = re.search(r"Non-existent config key: ([\w.]+)", str(err))
            if match is None:
                raise
            raise UnknownConfigKeyError(unknown_key_message(match.group(1), cfg, config_file)) from None
    if opts:
        try:
            cfg.merge_from_list(list(opts))
        except AssertionError as err:
            match = re.search(r"Non-existent key: ([\w.]+)", str(err))
            if match is None:
                raise
            raise UnknownConfigKeyError(unknown_key_message(match.group(1), cfg, "the command line")) from None
    return cfg
