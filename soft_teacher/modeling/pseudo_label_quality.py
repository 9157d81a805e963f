"""Per-iteration statistics of the pseudo labels, written to Detectron2's EventStorage.

Every scalar covers the whole iteration's unlabeled batch, all ranks: each rank sums
:func:`pseudo_label_counts`, the sums are added across ranks, and :func:`stats_from_counts`
divides. Names, all under ``pseudo/``:

- ``boxes_per_image_rpn`` / ``_cls`` / ``_reg``: pseudo boxes per image reaching each student loss
  (student view, after dropping the boxes that left it);
- ``teacher_score_mean``: mean score of the candidate pseudo boxes, 0 if none;
- ``uncertainty_p10`` / ``_p50`` / ``_p90``: percentiles of the candidates' jitter uncertainty, what
  ``SOFT_TEACHER.REG_UNCERTAINTY_THRESH`` lets through (binned by :data:`UNCERTAINTY_BIN` up to 0.3:
  five times the default ``JITTER_SCALE``, which is what an untrained regressor scores);
- ``precision`` / ``recall`` of the classification set, and ``precision_at_T`` / ``recall_at_T`` of
  the candidates scoring >= T for each T of :data:`SCORE_GRID` not below the candidates' own threshold;
  ``wrong_class_share``: the share of the classification set lying on an annotated object of another
  class (see :func:`false_positive_causes`). Only when the unlabeled images carry hidden annotations,
  and only where defined.

Matching is greedy and one-to-one, as in COCO evaluation, in the teacher view: in decreasing score
order each pseudo box takes the unmatched same-class annotation of highest IoU, if >= 0.5. So the
matches above any threshold are a prefix of those of all candidates, and one pass serves every
threshold. Offline, :func:`measure_pseudo_labels` (``tools/measure_pseudo_labels.py``) gives the same
figures for a checkpoint over a sample of unlabeled images.
"""
import math
from collections import Counter
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from detectron2.structures import Boxes, Instances, pairwise_iou

from .pseudo_labels import teacher_pseudo_labels
from .view_geometry import instances_to_view

MATCH_IOU = 0.5
SCORE_GRID = (0.5, 0.6, 0.7, 0.8, 0.9)
UNCERTAINTY_BIN = 0.001
UNCERTAINTY_BINS = 300  # the last bin also holds every uncertainty above 0.3: percentiles stop there
PERCENTILES = (10, 50, 90)


def same_class_iou(pseudo_labels: Instances, annotations: Instances) -> torch.Tensor:
    """``(P, G)`` IoU of each pseudo box with each annotation, 0 where their classes differ."""
    iou = pairwise_iou(pseudo_labels.gt_boxes, annotations.gt_boxes)
    same_class = pseudo_labels.gt_classes[:, None] == annotations.gt_classes[None, :]
    return torch.where(same_class, iou, torch.zeros_like(iou))


def true_positive_mask(pseudo_labels: Instances, annotations: Instances, iou_thresh: float = MATCH_IOU) -> torch.Tensor:
    """``(P,)`` bool: the pseudo boxes of one image that match an annotation (same frame), greedily by score.

    The greedy loop runs on the CPU, in numpy, on one copy of the IoU matrix: on a GPU it would stop the
    stream once per pseudo box, and torch ops on small CPU tensors cost several times numpy's.
    """
    iou = same_class_iou(pseudo_labels, annotations).detach().cpu().numpy()
    unmatched = np.ones(len(annotations), dtype=bool)
    matched = np.zeros(len(pseudo_labels), dtype=bool)
    if len(annotations):
        for index in pseudo_labels.scores.cpu().argsort(descending=True).tolist():
            candidates = np.where(unmatched, iou[index], -1.0)
            best = candidates.argmax()
            if candidates[best] >= iou_thresh:
                unmatched[best] = False
                matched[index] = True
    return torch.from_numpy(matched).to(pseudo_labels.scores.device)


# What :func:`pseudo_label_counts` sums, in order; every entry adds up over images and processes.
COUNT_NAMES = (
    ("images", "boxes_rpn", "boxes_cls", "boxes_reg", "candidates", "candidate_score_sum", "batches")
    + ("annotated_batches", "annotations", "true_positives", "cls_boxes_teacher_view", "wrong_class")
    + tuple(f"{kind}_at_{t}" for t in SCORE_GRID for kind in ("true_positives", "boxes"))
    + tuple(f"uncertainty_bin_{i}" for i in range(UNCERTAINTY_BINS))
)


def pseudo_label_counts(
    candidates: List[Instances],
    rpn_sets: List[Instances],
    cls_sets: List[Instances],
    reg_sets: List[Instances],
    cls_thresh: float,
    annotations_teacher_view: Optional[List[Instances]] = None,
    initial_thresh: float = 0.0,
) -> torch.Tensor:
    """The float64 ``(len(COUNT_NAMES),)`` CPU sums behind one batch's ``pseudo/*`` scalars.

    Sums, not ratios, so that ranks combine exactly with one ``all_reduce``. ``candidates`` and
    ``annotations_teacher_view`` are in the teacher view, the three loss sets in the student view.
    Grid thresholds below ``initial_thresh`` are unknown: the candidates cannot tell what they give.
    The counting runs on the host: the candidates come over in one copy, the annotations are moved only if
    they are not there already (the mapper leaves them on the CPU), and only the lengths of the loss sets
    are read. Raises ``FloatingPointError`` if a candidate's box, score or uncertainty is not finite.
    """
    candidates = _on_host(candidates)
    scores = torch.cat([c.scores for c in candidates])
    uncertainty = torch.cat([c.uncertainty for c in candidates]).double()
    bins = (uncertainty / UNCERTAINTY_BIN).floor().clamp(0, UNCERTAINTY_BINS - 1).long()
    counts = dict.fromkeys(COUNT_NAMES, 0.0)
    counts.update(
        images=len(candidates),
        boxes_rpn=sum(len(x) for x in rpn_sets),
        boxes_cls=sum(len(x) for x in cls_sets),
        boxes_reg=sum(len(x) for x in reg_sets),
        candidates=len(scores),
        candidate_score_sum=scores.double().sum().item(),
        batches=1,
    )
    for index, count in enumerate(torch.bincount(bins, minlength=UNCERTAINTY_BINS).tolist()):
        counts[f"uncertainty_bin_{index}"] = count
    if annotations_teacher_view is not None:
        annotations_teacher_view = [a.to("cpu") for a in annotations_teacher_view]
        matched, causes, _ = match_pseudo_labels(candidates, annotations_teacher_view)
        wrong_class = causes == FALSE_POSITIVE_CAUSES.index("wrong_class")
        counts["wrong_class"] = (wrong_class & (scores >= cls_thresh)).sum().item()
        counts["annotated_batches"] = 1
        counts["annotations"] = sum(len(a) for a in annotations_teacher_view)
        for name, thresh in [("", cls_thresh)] + [(f"_at_{t}", t) for t in SCORE_GRID]:
            above = scores >= thresh
            counts[f"true_positives{name}"] = (matched & above).sum().item()
            counts["cls_boxes_teacher_view" if not name else f"boxes{name}"] = above.sum().item()
        for t in SCORE_GRID:
            if t < initial_thresh:  # NaN survives the sums across processes and marks the figure unknown
                counts[f"true_positives_at_{t}"] = counts[f"boxes_at_{t}"] = math.nan
    return torch.tensor([float(counts[name]) for name in COUNT_NAMES], dtype=torch.float64)


def _on_host(candidates: List[Instances]) -> List[Instances]:
    """CPU copies of the candidates' ``gt_boxes``, ``gt_classes``, ``scores`` and ``uncertainty``, made in one
    device-to-host copy (a copy per field and image would stop the GPU stream as many times)."""
    if not candidates:
        return []
    packed = torch.cat([
        torch.cat([c.gt_boxes.tensor.float(), c.gt_classes[:, None].float(), c.scores[:, None].float(),
                   c.uncertainty[:, None].float()], dim=1)
        for c in candidates
    ]).cpu()
    if not torch.isfinite(packed).all():
        raise FloatingPointError(
            "The teacher's pseudo boxes or their jitter uncertainty are infinite or NaN: its weights have "
            "diverged with the student's. Try a lower SOLVER.BASE_LR or a longer SOLVER.WARMUP_ITERS, or enable "
            "SOLVER.CLIP_GRADIENTS."
        )
    return [
        Instances(c.image_size, gt_boxes=Boxes(rows[:, :4]), gt_classes=rows[:, 4].long(), scores=rows[:, 5],
                  uncertainty=rows[:, 6])
        for c, rows in zip(candidates, packed.split([len(c) for c in candidates]))
    ]


def _percentile(histogram: List[float], percent: float) -> float:
    """The ``percent``-th percentile of values binned in ``histogram``, interpolated within its bin."""
    target = percent / 100 * sum(histogram)
    below = 0.0
    for index, count in enumerate(histogram):
        if count and below + count >= target:
            return (index + (target - below) / count) * UNCERTAINTY_BIN
        below += count
    return len(histogram) * UNCERTAINTY_BIN


def stats_from_counts(counts: torch.Tensor) -> Dict[str, float]:
    """The ``pseudo/*`` scalars of summed counts; precision and recall only if every batch had annotations."""
    c = dict(zip(COUNT_NAMES, counts.tolist()))
    stats = {
        "pseudo/boxes_per_image_rpn": c["boxes_rpn"] / c["images"],
        "pseudo/boxes_per_image_cls": c["boxes_cls"] / c["images"],
        "pseudo/boxes_per_image_reg": c["boxes_reg"] / c["images"],
        "pseudo/teacher_score_mean": c["candidate_score_sum"] / c["candidates"] if c["candidates"] else 0.0,
    }
    if c["candidates"]:
        histogram = [c[f"uncertainty_bin_{i}"] for i in range(UNCERTAINTY_BINS)]
        stats.update({f"pseudo/uncertainty_p{p}": _percentile(histogram, p) for p in PERCENTILES})
    if c["annotated_batches"] == c["batches"]:
        for name, boxes in [("", "cls_boxes_teacher_view")] + [(f"_at_{t}", f"boxes_at_{t}") for t in SCORE_GRID]:
            if math.isnan(c[boxes]):
                continue
            if c[boxes]:
                stats[f"pseudo/precision{name}"] = c[f"true_positives{name}"] / c[boxes]
                if not name:
                    stats["pseudo/wrong_class_share"] = c["wrong_class"] / c[boxes]
            if c["annotations"]:
                stats[f"pseudo/recall{name}"] = c[f"true_positives{name}"] / c["annotations"]
    return stats


# ---------------------------------------------------------------------------------------------
# Offline measurement over a sample of images (tools/measure_pseudo_labels.py).

MEASURE_SCORE_GRID = SCORE_GRID + (0.95,)
MEASURE_PERCENTILES = (10, 25, 50, 75, 90)
UNCERTAINTY_GRID = (0.02, 0.03, 0.04, 0.05, None)  # None: every candidate
WELL_LOCALISED_IOU = 0.75
# Why a pseudo box is false, checked in this order (see :func:`false_positive_causes`).
FALSE_POSITIVE_CAUSES = ("duplicate", "wrong_class", "mislocated", "background")
MISLOCATED_IOU = 0.1  # a false box overlapping an annotation at least this much sits on an object


def false_positive_causes(pseudo_labels: Instances, annotations: Instances, matched: torch.Tensor):
    """Why each pseudo box of one image that is not ``matched`` (``(P,)`` bool, from
    :func:`true_positive_mask`) is false; boxes and annotations in the same frame.

    Returns ``(causes, annotated_classes)``, both ``(P,)`` int64: ``causes`` indexes
    :data:`FALSE_POSITIVE_CAUSES` (-1 for a true positive): ``duplicate``, a same-class annotation at
    IoU >= 0.5 that a higher-scoring box took; ``wrong_class``, an annotation of another class at
    IoU >= 0.5 (the box is on an object and names it wrongly); ``mislocated``, the best IoU with any
    annotation in [0.1, 0.5); ``background``, below 0.1. ``annotated_classes`` is the class of the
    best-overlapping annotation where the cause is ``wrong_class``, -1 elsewhere.
    """
    count, device = len(pseudo_labels), matched.device
    causes = torch.full((count,), -1, dtype=torch.int64, device=device)
    annotated_classes = torch.full((count,), -1, dtype=torch.int64, device=device)
    if not count:
        return causes, annotated_classes
    if not len(annotations):
        causes[~matched] = FALSE_POSITIVE_CAUSES.index("background")
        return causes, annotated_classes
    iou = pairwise_iou(pseudo_labels.gt_boxes, annotations.gt_boxes)
    best_iou, best = iou.max(dim=1)
    same_class_best = same_class_iou(pseudo_labels, annotations).max(dim=1).values
    for cause, condition in zip(FALSE_POSITIVE_CAUSES, (
        same_class_best >= MATCH_IOU, best_iou >= MATCH_IOU, best_iou >= MISLOCATED_IOU, torch.ones_like(matched),
    )):
        newly = ~matched & (causes < 0) & condition
        causes[newly] = FALSE_POSITIVE_CAUSES.index(cause)
    wrong_class = causes == FALSE_POSITIVE_CAUSES.index("wrong_class")
    annotated_classes[wrong_class] = annotations.gt_classes[best[wrong_class]]
    return causes, annotated_classes


def match_pseudo_labels(candidates: Sequence[Instances], annotations: Sequence[Instances]):
    """:func:`true_positive_mask` and :func:`false_positive_causes` of each image, concatenated over images.

    Returns ``(matched, causes, annotated_classes)``, each ``(N,)`` for the ``N`` candidates of all images.
    """
    if not candidates:
        return torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    matched_per_image = [true_positive_mask(c, a) for c, a in zip(candidates, annotations)]
    causes_per_image = [false_positive_causes(c, a, m) for c, a, m in zip(candidates, annotations, matched_per_image)]
    return (torch.cat(matched_per_image), torch.cat([c for c, _ in causes_per_image]),
            torch.cat([k for _, k in causes_per_image]))


def _ratio(numerator: float, denominator: float) -> Optional[float]:
    return numerator / denominator if denominator else None


def require_hidden_annotations(dataset_dicts: Sequence[dict], dataset_name: str = "The dataset") -> None:
    """Raise ``ValueError`` unless every dict carries ``annotations`` to measure pseudo labels against."""
    missing = sum("annotations" not in d for d in dataset_dicts)
    if missing:
        raise ValueError(
            f"{dataset_name} has no hidden annotations to measure against ({missing} of {len(dataset_dicts)} "
            "images have no 'annotations'): use the unlabeled split of an annotated set, e.g. "
            "shapes_train_5pct_1_unlabeled or coco_2017_train_10pct_1_unlabeled."
        )


def pseudo_label_figures(
    candidates: Sequence[Instances],
    annotations: Sequence[Instances],
    initial_score_thresh: float = 0.0,
    cls_thresh: Optional[float] = None,
) -> Dict:
    """JSON-ready quality figures of candidate pseudo boxes against annotations in the same frame.

    ``score_thresholds`` gives, per threshold of :data:`MEASURE_SCORE_GRID` not below
    ``initial_score_thresh``, the candidates' precision and recall, and ``false_positives``, how many
    of the false ones have each cause of :data:`FALSE_POSITIVE_CAUSES`. ``confusions`` lists the
    ``wrong_class`` boxes scoring >= ``cls_thresh`` (default ``initial_score_thresh``) by pair of
    annotated and pseudo class, most frequent first. ``uncertainty_thresholds`` gives,
    per threshold ``U`` of :data:`UNCERTAINTY_GRID`, the candidates with uncertainty < ``U``, their
    mean IoU with the best same-class annotation (matched or not) and the share of them at or above
    :data:`WELL_LOCALISED_IOU`: whether low uncertainty singles out well-localised boxes. A ratio
    without a denominator is ``None``.
    """
    cpu = [c.to("cpu") for c in candidates]
    anns = [a.to("cpu") for a in annotations]
    num_images, num_annotations = len(cpu), sum(len(a) for a in anns)
    empty = torch.zeros(0)
    scores = torch.cat([c.scores.float() for c in cpu]) if cpu else empty
    uncertainty = torch.cat([c.uncertainty.float() for c in cpu]) if cpu else empty
    matched, causes, annotated_classes = match_pseudo_labels(cpu, anns)
    pseudo_classes = torch.cat([c.gt_classes for c in cpu]) if cpu else empty.long()
    best_iou = torch.cat([
        same_class_iou(c, a).max(dim=1).values if len(a) else torch.zeros(len(c)) for c, a in zip(cpu, anns)
    ]) if cpu else empty

    score_rows = []
    for t in MEASURE_SCORE_GRID:
        if t < initial_score_thresh:
            continue
        above = scores >= t
        boxes, true_positives = int(above.sum()), int((matched & above).sum())
        score_rows.append({
            "threshold": t,
            "boxes": boxes,
            "boxes_per_image": _ratio(boxes, num_images),
            "true_positives": true_positives,
            "precision": _ratio(true_positives, boxes),
            "recall": _ratio(true_positives, num_annotations),
            "false_positives": {cause: int((above & (causes == index)).sum())
                                for index, cause in enumerate(FALSE_POSITIVE_CAUSES)},
        })
    confusion_thresh = initial_score_thresh if cls_thresh is None else cls_thresh
    confused = (scores >= confusion_thresh) & (causes == FALSE_POSITIVE_CAUSES.index("wrong_class"))
    pairs = Counter(zip(annotated_classes[confused].tolist(), pseudo_classes[confused].tolist()))
    confusions = [{"annotated_class": a, "pseudo_class": p, "boxes": n} for (a, p), n in pairs.most_common()]
    uncertainty_rows = []
    for u in UNCERTAINTY_GRID:
        below = uncertainty < u if u is not None else torch.ones_like(uncertainty, dtype=torch.bool)
        count = int(below.sum())
        uncertainty_rows.append({
            "threshold": u,
            "candidates": count,
            "mean_iou": float(best_iou[below].mean()) if count else None,
            "well_localised_share": _ratio(int((best_iou[below] >= WELL_LOCALISED_IOU).sum()), count),
        })
    values = uncertainty.double().numpy()
    percentiles = {f"p{p}": float(np.percentile(values, p)) if len(values) else None for p in MEASURE_PERCENTILES}
    return {
        "images": num_images,
        "annotations": num_annotations,
        "candidates": len(scores),
        "initial_score_thresh": initial_score_thresh,
        "score_thresholds": score_rows,
        "confusion_thresh": confusion_thresh,
        "confusions": confusions,
        "uncertainty_percentiles": percentiles,
        "uncertainty_thresholds": uncertainty_rows,
    }


@torch.no_grad()
def measure_pseudo_labels(
    model: torch.nn.Module,
    mapper: Callable[[dict], Optional[dict]],
    dataset_dicts: Sequence[dict],
    score_thresh: float,
    jitter_times: int,
    jitter_scale: float,
    cls_thresh: Optional[float] = None,
) -> Dict:
    """:func:`pseudo_label_figures` of a detector's pseudo labels on annotated images, as training makes them.

    ``mapper`` is the training one (``UnlabeledDatasetMapper(cfg, True)``), so each image gets its
    teacher view, pseudo-labelled alone, and its ``hidden_instances`` moved into that view; an image it
    cannot read counts in ``skipped_images``. ``model`` is a plain detector in eval mode or a
    teacher-student model, whose teacher labels.
    """
    require_hidden_annotations(dataset_dicts)
    teacher = getattr(model, "teacher", model)
    candidates, annotations, skipped = [], [], 0
    for dataset_dict in dataset_dicts:
        views = mapper(dataset_dict)
        if views is None:
            skipped += 1
            continue
        teacher_view = views["teacher"]
        labels = teacher_pseudo_labels(teacher, [teacher_view], score_thresh, jitter_times, jitter_scale)
        labels = labels.pseudo_labels[0].to("cpu")
        matrix = torch.as_tensor(teacher_view["transform_matrix"]).cpu()
        annotations.append(instances_to_view(views["hidden_instances"].to("cpu"), matrix, labels.image_size))
        candidates.append(labels)
    figures = pseudo_label_figures(candidates, annotations, score_thresh, cls_thresh)
    figures["skipped_images"] = skipped
    return figures
