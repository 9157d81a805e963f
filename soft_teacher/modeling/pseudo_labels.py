"""Teacher pseudo-labelling: detections, box-jitter uncertainty, soft weights, and the split of the candidates
into the sets that supervise each student loss.

The functions that run the teacher do so without gradients, on boxes in the teacher view;
:func:`split_pseudo_labels` reads only the candidates' scores and uncertainties.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from torch.nn import functional as F

from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.proposal_generator import RPN
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.structures import Boxes, ImageList, Instances

from .box_head import box_head_predictions
from .sync_free import clip_boxes, select


@dataclass
class TeacherOutput:
    """What one teacher pass over the teacher views leaves for the student's losses.

    ``images`` are the padded teacher views (``image_sizes`` unpadded); ``features`` are kept to score
    student proposals later; ``pseudo_labels`` holds per image the candidate pseudo boxes:
    ``gt_boxes`` ``(N, 4)``, ``gt_classes``, ``scores`` and jitter ``uncertainty``, each ``(N,)``.
    """

    images: ImageList
    features: Dict[str, torch.Tensor]
    pseudo_labels: List[Instances]


@dataclass
class PseudoLabelRecord:
    """One training step's pseudo labels as the student got them, kept for diagnostics (nothing trains on it).

    Per unlabeled image of this process's batch: ``candidates``, the teacher's candidate pseudo boxes in the
    teacher view (``gt_boxes``, ``gt_classes``, ``scores``, ``uncertainty``); ``rpn``, ``cls`` and ``reg``, the
    pseudo boxes each student loss used, in the student view; ``teacher_matrices``, each teacher view's
    ``(3, 3)`` matrix A_t (original image -> teacher view); ``hidden_instances``, the annotations the unlabeled
    data carry in original image coordinates (``gt_boxes``, ``gt_classes``), or None unless every image has them.
    """

    candidates: List[Instances]
    rpn: List[Instances]
    cls: List[Instances]
    reg: List[Instances]
    teacher_matrices: List[torch.Tensor]
    hidden_instances: Optional[List[Instances]]


@contextmanager
def training_proposal_counts(rpn: RPN) -> Iterator[RPN]:
    """Within the block, ``rpn`` in eval mode uses its ``*_NMS_TOPK_TRAIN`` proposal counts.

    Nothing else of the eval mode changes (no loss; non-finite proposals dropped, not raised).
    """
    pre_nms_topk, post_nms_topk = rpn.pre_nms_topk, rpn.post_nms_topk
    rpn.pre_nms_topk = {True: pre_nms_topk[True], False: pre_nms_topk[True]}
    rpn.post_nms_topk = {True: post_nms_topk[True], False: post_nms_topk[True]}
    try:
        yield rpn
    finally:
        rpn.pre_nms_topk, rpn.post_nms_topk = pre_nms_topk, post_nms_topk


@torch.no_grad()
def teacher_detections(
    teacher: GeneralizedRCNN, views: List[dict]
) -> Tuple[ImageList, Dict[str, torch.Tensor], List[Instances]]:
    """Images, backbone features and per image the detections of the teacher on ``views``.

    ``views`` holds per image ``{"image": uint8 (3, H_t, W_t)}``. As in the reference
    (microsoft/SoftTeacher ``extract_teacher_info``) the RPN keeps its training proposal counts
    while the box head uses its test settings (score threshold, NMS, detections per image);
    evaluating the teacher keeps the test counts.
    """
    if teacher.training:
        raise RuntimeError("The teacher must be in eval mode to pseudo-label; call teacher.eval() first.")
    images = teacher.preprocess_image(views)
    features = teacher.backbone(images.tensor)
    with training_proposal_counts(teacher.proposal_generator) as rpn:
        proposals, _ = rpn(images, features, None)
    detections, _ = teacher.roi_heads(images, features, proposals, None)
    return images, features, detections


def jitter_boxes(
    boxes: torch.Tensor, times: int, scale: float, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """``(times, N, 4)`` copies of ``(N, 4)`` XYXY boxes, each coordinate moved by N(0, scale * box side)."""
    sizes = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)  # (N, 4): w, h, w, h
    noise = torch.randn((times, *boxes.shape), generator=generator, dtype=boxes.dtype, device=boxes.device)
    return boxes + noise * (scale * sizes)


def regression_uncertainty(regressed: torch.Tensor, min_side: float = 1e-6) -> torch.Tensor:
    """``(N,)`` uncertainty of ``N`` boxes from ``(T, N, 4)`` regressions of their ``T >= 2`` jittered copies.

    Each coordinate's std over the copies, relative to the mean box's width (x) or height (y), is
    averaged over the 4 coordinates; ``min_side`` keeps a collapsed box finite.
    """
    mean_box = regressed.mean(dim=0)
    sizes = (mean_box[:, 2:] - mean_box[:, :2]).repeat(1, 2).clamp(min=min_side)
    std = ((regressed - mean_box).square().sum(dim=0) / (len(regressed) - 1)).sqrt()  # also quiet for N = 0
    return (std / sizes).mean(dim=1)


@torch.no_grad()
def jitter_uncertainty(
    roi_heads: StandardROIHeads,
    features: Dict[str, torch.Tensor],
    detections: List[Instances],
    times: int,
    scale: float,
) -> List[torch.Tensor]:
    """Per image, the ``(N_i,)`` box-jitter uncertainty of the detections, with one box-head call.

    Each copy is regressed for its detection's class and clipped to the image before
    :func:`regression_uncertainty`.
    """
    jittered = [
        Instances(
            det.image_size,
            proposal_boxes=Boxes(jitter_boxes(det.pred_boxes.tensor, times, scale).reshape(-1, 4)),
            gt_classes=det.pred_classes.repeat(times),  # copy-major, like the reshaped boxes
        )
        for det in detections
    ]
    predictions = box_head_predictions(roi_heads, features, [j.proposal_boxes for j in jittered])
    regressed = roi_heads.box_predictor.predict_boxes_for_gt_classes(predictions, jittered)
    return [
        regression_uncertainty(clip_boxes(boxes, det.image_size).view(times, len(det), 4))
        for boxes, det in zip(regressed, detections)
    ]


@torch.no_grad()
def teacher_pseudo_labels(
    teacher: GeneralizedRCNN, views: List[dict], score_thresh: float, jitter_times: int, jitter_scale: float
) -> TeacherOutput:
    """The candidate pseudo boxes (score >= ``score_thresh``) of a batch of teacher views, with their uncertainty."""
    images, features, detections = teacher_detections(teacher, views)
    candidates = [select(det, det.scores >= score_thresh) for det in detections]
    uncertainties = jitter_uncertainty(teacher.roi_heads, features, candidates, jitter_times, jitter_scale)
    pseudo_labels = [
        Instances(
            cand.image_size,
            gt_boxes=cand.pred_boxes,
            gt_classes=cand.pred_classes,
            scores=cand.scores.float(),
            uncertainty=unc,
        )
        for cand, unc in zip(candidates, uncertainties)
    ]
    return TeacherOutput(images=images, features=features, pseudo_labels=pseudo_labels)


def split_pseudo_labels(
    pseudo_labels: Instances, rpn_thresh: float, cls_thresh: float, reg_uncertainty_thresh: float
) -> Dict[str, torch.Tensor]:
    """Which candidate pseudo boxes supervise each student loss: ``{"rpn", "cls", "reg"}``, ``(N,)`` bool masks.

    ``pseudo_labels`` holds the ``N`` candidates of one image with their ``scores`` and ``uncertainty``,
    each ``(N,)``, in either view: the split reads no box, and each mask indexes ``pseudo_labels`` itself.
    ``"rpn"``: score >= ``rpn_thresh`` (the RPN's ground truth); ``"cls"``: score >= ``cls_thresh`` (the
    ROI classification's); ``"reg"``: uncertainty < ``reg_uncertainty_thresh`` (the ROI regression's).
    """
    return {
        "rpn": pseudo_labels.scores >= rpn_thresh,
        "cls": pseudo_labels.scores >= cls_thresh,
        "reg": pseudo_labels.uncertainty < reg_uncertainty_thresh,
    }


@torch.no_grad()
def teacher_background_probs(
    roi_heads: StandardROIHeads, features: Dict[str, torch.Tensor], boxes: List[Boxes]
) -> torch.Tensor:
    """``(R,)`` float32 softmax background probability of the teacher-view ``boxes``, ``R = sum(R_i)``."""
    logits, _ = box_head_predictions(roi_heads, features, boxes)
    return F.softmax(logits.float(), dim=1)[:, -1]
