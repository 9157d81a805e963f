"""The ``SoftTeacher`` meta-architecture (Xu et al., ICCV 2021) for Detectron2.

Two ``GeneralizedRCNN`` detectors built from one config: the ``student``, trained by
the optimizer on labeled images and on pseudo labels, and its ``teacher``, which makes
the pseudo labels, never receives gradients, always stays in eval mode and follows the
student by EMA (:mod:`soft_teacher.modeling.ema`, driven by a trainer hook).
"""
import contextlib
import copy
import logging
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.modeling.roi_heads import FastRCNNOutputLayers, StandardROIHeads
from detectron2.utils.events import get_event_storage

from ..config import EVAL_MODELS, UNSUP_LOSS_NAMES, UNSUP_LOSSES, detector_config
from .pseudo_labels import PseudoLabelRecord, TeacherOutput, split_pseudo_labels, teacher_pseudo_labels
from .sync_free import select
from .unsup_losses import unsup_roi_cls_loss, unsup_roi_reg_loss
from .view_geometry import instances_to_view, view_to_view_matrix

__all__ = ["SoftTeacher"]

logger = logging.getLogger(__name__)


def _check_detector(detector: GeneralizedRCNN) -> None:
    """Soft Teacher re-runs the box branch on boxes it chooses and reads softmax background scores."""
    if detector.proposal_generator is None:
        raise ValueError("SoftTeacher needs an RPN: set MODEL.PROPOSAL_GENERATOR.NAME to 'RPN'.")
    heads = detector.roi_heads
    if not isinstance(heads, StandardROIHeads) or not isinstance(heads.box_predictor, FastRCNNOutputLayers):
        raise ValueError(
            f"SoftTeacher needs StandardROIHeads with one FastRCNNOutputLayers box predictor, got "
            f"{type(heads).__name__}: set MODEL.ROI_HEADS.NAME to 'StandardROIHeads' (Res5/cascade heads are "
            "not supported)."
        )
    if heads.box_predictor.use_sigmoid_ce:
        raise ValueError(
            "SoftTeacher weighs background proposals by the teacher's softmax background probability: "
            "set MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE to False."
        )


@META_ARCH_REGISTRY.register()
class SoftTeacher(nn.Module):
    """A student detector and its EMA teacher, trained semi-supervised with Soft Teacher.

    Per unlabeled image the teacher detects on the teacher view; its confident detections are the
    candidate pseudo boxes, each with a box-jitter uncertainty, and move to the student view by
    ``M = A_s @ inverse(A_t)`` (docs/architecture.md). On the student view the student gets RPN
    losses and the soft-teacher ROI classification loss against the high-score candidates, and the
    ROI regression loss against the low-uncertainty ones. The thresholds and weights are the
    ``SOFT_TEACHER`` config keys; soft_teacher/config.py gives their meaning and defaults.
    """

    @configurable
    def __init__(
        self,
        *,
        student: GeneralizedRCNN,
        initial_score_thresh: float = 0.5,
        rpn_pseudo_thresh: float = 0.9,
        cls_pseudo_thresh: float = 0.9,
        reg_uncertainty_thresh: float = 0.02,
        jitter_times: int = 10,
        jitter_scale: float = 0.06,
        unsup_weight: float = 4.0,
        burn_in_iters: int = 0,
        eval_model: str = "teacher",
        strong_view_bn_stats: bool = False,
        unsup_losses: Tuple[str, ...] = UNSUP_LOSSES,
    ):
        """
        Args:
            student: the detector to train; the teacher starts as a deep copy of it.
            Every other argument is the ``SOFT_TEACHER`` key of the same name in upper case, described
            in soft_teacher/config.py. ``burn_in_iters`` counts ``EventStorage.iter``.
        """
        super().__init__()
        _check_detector(student)
        if eval_model not in EVAL_MODELS:
            raise ValueError(f"SOFT_TEACHER.EVAL_MODEL must be one of {EVAL_MODELS}, got {eval_model!r}.")
        if jitter_times < 2:
            raise ValueError(f"SOFT_TEACHER.JITTER_TIMES must be >= 2 to measure a spread, got {jitter_times}.")
        self.student = student
        self.teacher = copy.deepcopy(student)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self._register_load_state_dict_pre_hook(_plain_detector_into_both, with_module=True)
        self.initial_score_thresh = initial_score_thresh
        self.rpn_pseudo_thresh = rpn_pseudo_thresh
        self.cls_pseudo_thresh = cls_pseudo_thresh
        self.reg_uncertainty_thresh = reg_uncertainty_thresh
        self.jitter_times = jitter_times
        self.jitter_scale = jitter_scale
        self.unsup_weight = unsup_weight
        self.burn_in_iters = burn_in_iters
        self.eval_model = eval_model
        self.strong_view_bn_stats = strong_view_bn_stats
        # the pseudo labels of the last training step, for the diagnostics hook (None during burn-in)
        self.last_pseudo_labels: Optional[PseudoLabelRecord] = None
        unknown = set(unsup_losses) - set(UNSUP_LOSS_NAMES)
        if unknown:
            raise ValueError(f"SOFT_TEACHER.UNSUP_LOSSES must be a subset of {UNSUP_LOSS_NAMES}, "
                             f"got {tuple(unsup_losses)}.")
        if {"roi_cls", "roi_objectness"} <= set(unsup_losses):
            raise ValueError("SOFT_TEACHER.UNSUP_LOSSES names both 'roi_cls' and 'roi_objectness', two forms of "
                             "the ROI classification loss: keep one.")
        self.unsup_losses = tuple(unsup_losses)

    @classmethod
    def from_config(cls, cfg):
        st = cfg.SOFT_TEACHER
        return {
            "student": GeneralizedRCNN(detector_config(cfg)),
            "initial_score_thresh": st.INITIAL_SCORE_THRESH,
            "rpn_pseudo_thresh": st.RPN_PSEUDO_THRESH,
            "cls_pseudo_thresh": st.CLS_PSEUDO_THRESH,
            "reg_uncertainty_thresh": st.REG_UNCERTAINTY_THRESH,
            "jitter_times": st.JITTER_TIMES,
            "jitter_scale": st.JITTER_SCALE,
            "unsup_weight": st.UNSUP_WEIGHT,
            "burn_in_iters": st.BURN_IN_ITERS,
            "eval_model": st.EVAL_MODEL,
            "strong_view_bn_stats": st.STRONG_VIEW_BN_STATS,
            "unsup_losses": tuple(st.UNSUP_LOSSES),
        }

    @property
    def device(self) -> torch.device:
        return self.student.device

    @property
    def eval_detector(self) -> GeneralizedRCNN:
        """The detector that predicts in eval mode (``eval_model``; "both" means the teacher)."""
        return self.student if self.eval_model == "student" else self.teacher

    def train(self, mode: bool = True) -> "SoftTeacher":
        """Set the student's mode; the teacher always stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, batched_inputs: Union[Dict[str, List[dict]], List[dict]]):
        """
        In training, ``batched_inputs`` is ``{"labeled": [...], "unlabeled": [...]}`` (or a plain list of
        labeled dicts) and the result a dict of scalar losses: the student's own as ``sup_loss_*`` and,
        after burn-in, those of ``unsup_losses`` as ``unsup_loss_*``, already times ``unsup_weight``; the
        step's pseudo labels are then kept in :attr:`last_pseudo_labels`.
        In eval mode the predictions of :attr:`eval_detector` on a list of Detectron2 input dicts.
        """
        if not self.training:
            return self.eval_detector(batched_inputs)
        labeled, unlabeled = _split_batch(batched_inputs)
        if not labeled or any("instances" not in x for x in labeled):
            raise ValueError("Every labeled training dict needs its 'instances' (the annotations in the labeled "
                             "view), and the labeled batch must not be empty: build the loader with "
                             "soft_teacher.data's semi-supervised loader.")
        self.last_pseudo_labels = None
        losses = {f"sup_{name}": value for name, value in self.student(labeled).items()}
        if unlabeled is not None and get_event_storage().iter >= self.burn_in_iters:
            losses.update(self.unsupervised_losses(unlabeled))
        return losses

    def pseudo_label(self, unlabeled: List[dict]) -> TeacherOutput:
        """The teacher's candidate pseudo boxes (teacher view) and features for a batch of unlabeled dicts."""
        if not unlabeled:
            raise ValueError(
                "The unlabeled batch is empty after burn-in; set SOLVER.IMS_PER_BATCH_UNLABELED to at "
                "least the number of GPUs."
            )
        return teacher_pseudo_labels(
            self.teacher,
            [d["teacher"] for d in unlabeled],
            self.initial_score_thresh,
            self.jitter_times,
            self.jitter_scale,
        )

    def unsupervised_losses(self, unlabeled: List[dict]) -> Dict[str, torch.Tensor]:
        """The weighted ``unsup_*`` losses of a batch of unlabeled dicts, in four steps: the teacher's
        candidates (teacher view), moved to the student view by ``M = A_s @ inverse(A_t)``; their split into
        the sets each loss uses; the student on the student views; the losses. Keeps the pseudo labels in
        :attr:`last_pseudo_labels`; the student's own scalars (RPN anchors, ROI samples) go under ``unsup/``.
        """
        teacher_out = self.pseudo_label(unlabeled)
        images = self.student.preprocess_image([d["student"] for d in unlabeled])
        # inverted where the mapper left them (the CPU: an inverse on the GPU reads its status back),
        # then moved in one copy
        host_matrices = [(d["teacher"]["transform_matrix"], d["student"]["transform_matrix"]) for d in unlabeled]
        matrices = torch.stack(
            [view_to_view_matrix(a_t, a_s) for a_t, a_s in host_matrices]  # M
            + [view_to_view_matrix(a_s, a_t) for a_t, a_s in host_matrices]  # inverse(M)
        ).to(self.device, non_blocking=True)
        teacher_to_student, student_to_teacher = list(matrices[: len(unlabeled)]), list(matrices[len(unlabeled):])
        pseudo_labels = [
            instances_to_view(p, m, size)
            for p, m, size in zip(teacher_out.pseudo_labels, teacher_to_student, images.image_sizes)
        ]
        masks = [
            split_pseudo_labels(p, self.rpn_pseudo_thresh, self.cls_pseudo_thresh, self.reg_uncertainty_thresh)
            for p in pseudo_labels
        ]
        rpn_sets = [select(p, m["rpn"]) for p, m in zip(pseudo_labels, masks)]
        cls_sets = [select(p, m["cls"]) for p, m in zip(pseudo_labels, masks)]
        reg_sets = [select(p, m["reg"]) for p, m in zip(pseudo_labels, masks)]
        self.last_pseudo_labels = PseudoLabelRecord(
            candidates=teacher_out.pseudo_labels, rpn=rpn_sets, cls=cls_sets, reg=reg_sets,
            teacher_matrices=[a_t for a_t, _ in host_matrices],
            hidden_instances=([d["hidden_instances"] for d in unlabeled]
                              if all("hidden_instances" in d for d in unlabeled) else None),
        )

        with get_event_storage().name_scope("unsup"), _batch_norm_statistics_kept(
                self.student, not self.strong_view_bn_stats):
            features = self.student.backbone(images.tensor)
            proposals, rpn_losses = self.student.proposal_generator(images, features, rpn_sets)
            losses = rpn_losses if "rpn" in self.unsup_losses else {}
            if "roi_cls" in self.unsup_losses or "roi_objectness" in self.unsup_losses:
                losses["loss_cls"] = unsup_roi_cls_loss(
                    self.student.roi_heads,
                    features,
                    proposals,
                    cls_sets,
                    self.teacher.roi_heads,
                    teacher_out.features,
                    student_to_teacher,
                    teacher_out.images.image_sizes,
                    class_agnostic="roi_objectness" in self.unsup_losses,
                )
            if "roi_reg" in self.unsup_losses:
                losses["loss_box_reg"] = unsup_roi_reg_loss(self.student.roi_heads, features, proposals, reg_sets)
        return {f"unsup_{name}": value * self.unsup_weight for name, value in losses.items()}


@contextlib.contextmanager
def _batch_norm_statistics_kept(module: nn.Module, enabled: bool = True):
    """Within the block, BatchNorm layers in training mode normalise with batch statistics as usual
    but leave their running statistics (what inference uses) and batch counter unchanged."""
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if enabled else []
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, num_batches_tracked) in zip(layers, saved):
            m.momentum = momentum
            if num_batches_tracked is not None:
                m.num_batches_tracked.copy_(num_batches_tracked)


TEACHER_PREFIX = "teacher."
STUDENT_PREFIX = "student."


def is_soft_teacher_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether some key names one of the two models (``teacher.*`` or ``student.*``)."""
    return any(key.startswith((TEACHER_PREFIX, STUDENT_PREFIX)) for key in state_dict)


def _plain_detector_into_both(module: "SoftTeacher", state_dict, prefix: str, *args) -> None:
    """Load-state-dict pre-hook: a plain detector's weights (no ``teacher.*``/``student.*`` key) go to both.

    So every loader (``DetectionCheckpointer``, ``DefaultPredictor``, ``load_state_dict``) gives a
    SoftTeacher model the weights of a model-zoo or exported detector instead of silently loading
    nothing. The student takes them, and the teacher becomes a copy of the student, weights the
    state dict lacks included (e.g. the heads, for an ImageNet backbone). A weight whose shape
    differs from the model's (e.g. another number of classes) is left out with a warning, as
    Detectron2's checkpointer does.
    """
    own = {key[len(prefix):]: key for key in state_dict if key.startswith(prefix)}
    if not own or is_soft_teacher_state_dict(own):
        return
    student = module.student.state_dict()
    for name, key in own.items():
        value = state_dict.pop(key)
        if name in student and tuple(value.shape) != tuple(student[name].shape):
            logger.warning(f"Skip loading '{name}': its shape {tuple(value.shape)} differs from the model's "
                           f"{tuple(student[name].shape)}.")
            continue
        state_dict[prefix + STUDENT_PREFIX + name] = value
    for name, value in student.items():
        state_dict[prefix + TEACHER_PREFIX + name] = state_dict.get(prefix + STUDENT_PREFIX + name, value)


def _split_batch(batched_inputs) -> Tuple[List[dict], Optional[List[dict]]]:
    """``(labeled, unlabeled)`` of a training batch; ``unlabeled`` is None for a plain list."""
    if isinstance(batched_inputs, dict):
        missing = {"labeled", "unlabeled"} - set(batched_inputs)
        if missing:
            raise ValueError(
                f"A SoftTeacher training batch needs the keys 'labeled' and 'unlabeled'; {sorted(missing)} "
                "missing. Build the loader with soft_teacher.data's semi-supervised loader."
            )
        return batched_inputs["labeled"], batched_inputs["unlabeled"]
    return batched_inputs, None
