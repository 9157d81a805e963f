"""Teacher pseudo-labelling: detections on the teacher view, box-jitter uncertainty, soft weights.

Everything here runs the frozen teacher under ``torch.no_grad()``; every box is in the
teacher view frame.
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


@dataclass
class TeacherOutput:
    """What one teacher pass over the teacher views leaves for the student's losses.

    Attributes:
        images: the normalised, padded teacher views; ``image_sizes`` are the unpadded (h, w).
        features: the teacher's backbone features, kept to score student proposals later.
        pseudo_labels: per image, the candidate pseudo boxes (teacher detections with
            score >= the initial threshold), teacher view frame, with fields
            ``gt_boxes`` (Boxes (N, 4)), ``gt_classes`` (int64 (N,)), ``scores`` (N,)
            and ``uncertainty`` (N,), the box-jitter regression uncertainty.
    """

    images: ImageList
    features: Dict[str, torch.Tensor]
    pseudo_labels: List[Instances]


@contextmanager
def training_proposal_counts(rpn: RPN) -> Iterator[RPN]:
    """Within the block, ``rpn`` in eval mode keeps its training proposal counts.

    Detectron2's RPN picks ``pre_nms_topk[self.training]`` / ``post_nms_topk[self.training]``
    (``MODEL.RPN.*_NMS_TOPK_TRAIN`` / ``*_TEST``); inside the block both keys give the training
    counts; the original dicts are restored on exit, whatever happens. Nothing else of the
    eval mode changes (no loss, non-finite proposals dropped rather than raised).
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
    """Run the full teacher detector: RPN, box head, per-class NMS.

    As the reference (microsoft/SoftTeacher ``extract_teacher_info``), the RPN keeps its
    training proposal counts (``MODEL.RPN.PRE_NMS_TOPK_TRAIN`` / ``POST_NMS_TOPK_TRAIN``,
    :func:`training_proposal_counts`) while the box head uses its test settings
    (``MODEL.ROI_HEADS.SCORE_THRESH_TEST``, ``NMS_THRESH_TEST``, ``TEST.DETECTIONS_PER_IMAGE``).
    The teacher's evaluation (``teacher(inputs)`` in eval mode) keeps the test counts.

    Args:
        teacher: a detector in eval mode, with a Detectron2 ``RPN`` proposal generator.
        views: per image, a dict with ``"image"``: uint8 ``(3, H_t, W_t)`` teacher view.

    Returns:
        The preprocessed images, the backbone features and per image the detections
        (``pred_boxes``, ``scores``, ``pred_classes``) in the teacher view frame.
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
    """Random copies of boxes: each coordinate moves by N(0, scale * box width (x) / height (y)).

    Args:
        boxes: ``(N, 4)`` XYXY_ABS boxes.
        times: number of copies of each box.
        scale: offset std as a fraction of the box width/height.

    Returns:
        ``(times, N, 4)`` jittered copies.
    """
    sizes = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)  # (N, 4): w, h, w, h
    noise = torch.randn((times, *boxes.shape), generator=generator, dtype=boxes.dtype, device=boxes.device)
    return boxes + noise * (scale * sizes)


def regression_uncertainty(regressed: torch.Tensor, min_side: float = 1e-6) -> torch.Tensor:
    """Uncertainty of each box from the teacher's regressions of its jittered copies.

    Args:
        regressed: ``(T, N, 4)`` XYXY boxes, the ``T >= 2`` regressed copies of ``N`` boxes.
        min_side: lower bound of the mean box's width/height, so a collapsed box stays finite.

    Returns:
        ``(N,)``: the std over the copies (unbiased) of each coordinate divided by the
        width (x) / height (y) of the mean box, averaged over the 4 coordinates.
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
    """Box-jitter uncertainty of every detection of the batch, with one box-head call.

    Each box is copied ``times`` times (:func:`jitter_boxes`), every copy is regressed by
    the box head for the detection's class (class-specific regression), the results are
    clipped to the image and reduced by :func:`regression_uncertainty`.

    Args:
        roi_heads: the teacher's ROI heads; ``features`` its backbone features.
        detections: per image, ``pred_boxes`` (N_i, 4) and ``pred_classes`` (N_i,), teacher view.

    Returns:
        Per image, the ``(N_i,)`` uncertainties.
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
    uncertainties = []
    for boxes, det in zip(regressed, detections):
        boxes = Boxes(boxes)
        boxes.clip(det.image_size)
        uncertainties.append(regression_uncertainty(boxes.tensor.view(times, len(det), 4)))
    return uncertainties


@torch.no_grad()
def teacher_pseudo_labels(
    teacher: GeneralizedRCNN, views: List[dict], score_thresh: float, jitter_times: int, jitter_scale: float
) -> TeacherOutput:
    """Candidate pseudo boxes of a batch of teacher views, with their jitter uncertainty.

    Args:
        teacher: the teacher detector, in eval mode.
        views: per image, ``{"image": uint8 (3, H_t, W_t), ...}`` (the teacher view).
        score_thresh: detections with ``score >= score_thresh`` are kept.
        jitter_times, jitter_scale: see :func:`jitter_boxes`.
    """
    images, features, detections = teacher_detections(teacher, views)
    candidates = [det[det.scores >= score_thresh] for det in detections]
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


@torch.no_grad()
def teacher_background_probs(
    roi_heads: StandardROIHeads, features: Dict[str, torch.Tensor], boxes: List[Boxes]
) -> torch.Tensor:
    """The teacher's softmax background probability of each box (one box-head call).

    Args:
        roi_heads: the teacher's ROI heads; ``features`` its backbone features.
        boxes: per image, ``(R_i, 4)`` boxes in the teacher view frame.

    Returns:
        ``(R,)`` float32 probabilities, ``R = sum(R_i)``, in the order of ``boxes``.
    """
    logits, _ = box_head_predictions(roi_heads, features, boxes)
    return F.softmax(logits.float(), dim=1)[:, -1]
