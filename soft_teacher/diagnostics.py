"""Pseudo-label diagnostics: statistics of what the teacher hands the student, computed beside training.

The model computes its losses and keeps each training step's pseudo labels in
``SoftTeacher.last_pseudo_labels`` (a :class:`~soft_teacher.modeling.PseudoLabelRecord`); after the step,
the trainer's ``PseudoLabelStatistics`` hook makes one call, :meth:`PseudoLabelDiagnostics.__call__`,
which counts on the host, adds the counts over ranks with one ``all_reduce`` and returns the scalars
below, all under ``pseudo/``, each over the whole iteration's unlabeled batch (all ranks).

Without annotations (what any user's unlabeled images give):

- ``boxes_per_image_rpn`` / ``_cls`` / ``_reg``: pseudo boxes per image reaching each student loss
  (student view, after dropping the boxes that left it), and ``boxes_per_image_labeled``: annotated boxes
  per image of the labeled set, the level ``_cls`` would reach if the teacher found every object;
- ``teacher_score_mean``: mean score of the candidate pseudo boxes, 0 if none;
- ``uncertainty_p10`` / ``_p50`` / ``_p90``: percentiles of the candidates' jitter uncertainty, what
  ``SOFT_TEACHER.REG_UNCERTAINTY_THRESH`` lets through (binned by :data:`UNCERTAINTY_BIN` up to 0.3, five
  times the default ``JITTER_SCALE``: what an untrained regressor scores);
- ``class_share_distance``: the total-variation distance (0: the same shares, 1: no class in common)
  between the class shares of the classification pseudo boxes, pooled over the last
  ``SOFT_TEACHER.CLASS_SHARE_WARN_ITERS`` iterations, and the labeled set's class shares; and
  ``class_share_max_ratio``: the largest ratio of a class's pseudo-box share to its labeled share (among
  the classes with enough pooled boxes to tell, :data:`MIN_EXPECTED_BOXES`). A teacher that names objects
  of several classes as one (the failure of a weak teacher with very few labels) drives both up; a
  warning names the class once its ratio exceeds ``SOFT_TEACHER.CLASS_SHARE_WARN_RATIO`` over a full window.

Against the hidden annotations of unlabeled images that carry them (the built-in splits do), in the teacher
view: ``precision`` / ``recall`` of the classification set, ``precision_at_T`` / ``recall_at_T`` of the
candidates scoring >= T for each T of :data:`SCORE_GRID` not below the candidates' own threshold, and
``wrong_class_share``: the share of the classification set lying on an annotated object of another class
(see :func:`false_positive_causes`); only where defined.

Matching is greedy and one-to-one, as in COCO evaluation: in decreasing score order each pseudo box takes the
unmatched same-class annotation of highest IoU, if >= 0.5. So the matches above any threshold are a prefix of
those of all candidates, and one pass serves every threshold. ``tools/measure_pseudo_labels.py`` gives the same
figures offline for a checkpoint.
"""
import functools
import logging
import math
from collections import deque
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils import comm

from .modeling.view_geometry import instances_to_view

__all__ = [
    "FALSE_POSITIVE_CAUSES", "MATCH_IOU", "SCORE_GRID", "ClassShareWatch", "LabeledSetStatistics",
    "PseudoLabelDiagnostics", "false_positive_causes", "match_pseudo_labels", "pseudo_label_counts",
    "same_class_iou", "stats_from_counts", "true_positive_mask",
]

logger = logging.getLogger(__name__)

MATCH_IOU = 0.5
SCORE_GRID = (0.5, 0.6, 0.7, 0.8, 0.9)
UNCERTAINTY_BIN = 0.002
UNCERTAINTY_BINS = 150  # the last bin also holds every uncertainty above 0.3: percentiles stop there
PERCENTILES = (10, 50, 90)
# A class's share is judged against its labeled share only once the pooled pseudo boxes would hold at least
# this many of its boxes at its labeled share: below that, chance alone doubles a share.
MIN_EXPECTED_BOXES = 10
# Why a pseudo box is false, checked in this order (see :func:`false_positive_causes`).
FALSE_POSITIVE_CAUSES = ("duplicate", "wrong_class", "mislocated", "background")
MISLOCATED_IOU = 0.1  # a false box overlapping an annotation at least this much sits on an object
NON_FINITE_MESSAGE = (
    "The teacher's pseudo boxes or their jitter uncertainty are infinite or NaN: its weights have diverged with "
    "the student's. Try a lower SOLVER.BASE_LR or a longer SOLVER.WARMUP_ITERS, or enable SOLVER.CLIP_GRADIENTS."
)


# ---------------------------------------------------------------------------------------------
# Matching pseudo boxes against annotations (one image, one frame)


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


# ---------------------------------------------------------------------------------------------
# Counting one batch, and the scalars of counts summed over batches and ranks


@functools.lru_cache(maxsize=None)
def count_names(num_classes: int) -> tuple:
    """What :func:`pseudo_label_counts` sums, in order; every entry adds up over images and processes."""
    return (
        ("images", "boxes_rpn", "boxes_cls", "boxes_reg", "candidates", "candidate_score_sum", "batches")
        + ("annotated_batches", "annotations", "true_positives", "cls_boxes_teacher_view", "wrong_class")
        + tuple(f"{kind}_at_{t}" for t in SCORE_GRID for kind in ("true_positives", "boxes"))
        + tuple(f"uncertainty_bin_{i}" for i in range(UNCERTAINTY_BINS))
        + tuple(f"cls_boxes_of_class_{c}" for c in range(num_classes))
    )


def pseudo_label_counts(
    candidates: List[Instances],
    rpn_sets: List[Instances],
    cls_sets: List[Instances],
    reg_sets: List[Instances],
    cls_thresh: float,
    num_classes: int,
    annotations_teacher_view: Optional[List[Instances]] = None,
    initial_thresh: float = 0.0,
) -> torch.Tensor:
    """The float64 ``(len(count_names(num_classes)),)`` CPU sums behind one batch's ``pseudo/*`` scalars.

    Sums, not ratios, so that ranks combine exactly with one ``all_reduce``. ``candidates`` and
    ``annotations_teacher_view`` are in the teacher view, the three loss sets in the student view (of the
    classification set, the classes are counted too). Grid thresholds below ``initial_thresh`` are unknown:
    the candidates cannot tell what they give. The counting runs on the host: the candidates and the
    classification sets' classes come over in one copy, and the annotations are moved only if they are
    not there already (the mapper leaves them on the CPU).

    Raises:
        FloatingPointError: a candidate's box, score or uncertainty is not finite.
    """
    candidates, cls_classes = _on_host(candidates, cls_sets)
    names = count_names(num_classes)
    scores = torch.cat([c.scores for c in candidates]) if candidates else torch.zeros(0)
    uncertainty = torch.cat([c.uncertainty for c in candidates]).double() if candidates else torch.zeros(0)
    bins = (uncertainty / UNCERTAINTY_BIN).floor().clamp(0, UNCERTAINTY_BINS - 1).long()
    counts = dict.fromkeys(names, 0.0)
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
    for index, count in enumerate(torch.bincount(cls_classes, minlength=num_classes)[:num_classes].tolist()):
        counts[f"cls_boxes_of_class_{index}"] = count
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
    return torch.tensor([float(counts[name]) for name in names], dtype=torch.float64)


def _on_host(candidates: List[Instances], cls_sets: List[Instances]):
    """CPU copies of the candidates' ``gt_boxes``, ``gt_classes``, ``scores`` and ``uncertainty``, and the
    ``(M,)`` classes of the classification sets' boxes, made in one device-to-host copy (a copy per field and
    image would stop the GPU stream as many times).

    Raises:
        FloatingPointError: a candidate's box, score or uncertainty is not finite.
    """
    rows = [torch.cat([c.gt_boxes.tensor.float(), c.gt_classes[:, None].float(), c.scores[:, None].float(),
                       c.uncertainty[:, None].float()], dim=1) for c in candidates]
    classes = [s.gt_classes.float() for s in cls_sets]
    if not rows and not classes:
        return [], torch.zeros(0, dtype=torch.long)
    packed = torch.cat([r.flatten() for r in rows] + classes).cpu()
    num_rows = sum(len(c) for c in candidates)
    candidate_rows, cls_classes = packed[:7 * num_rows].view(num_rows, 7), packed[7 * num_rows:].long()
    if not torch.isfinite(candidate_rows).all():
        raise FloatingPointError(NON_FINITE_MESSAGE)
    on_host = [
        Instances(c.image_size, gt_boxes=Boxes(part[:, :4]), gt_classes=part[:, 4].long(), scores=part[:, 5],
                  uncertainty=part[:, 6])
        for c, part in zip(candidates, candidate_rows.split([len(c) for c in candidates]))
    ]
    return on_host, cls_classes


def _percentile(histogram: List[float], percent: float) -> float:
    """The ``percent``-th percentile of values binned in ``histogram``, interpolated within its bin."""
    target = percent / 100 * sum(histogram)
    below = 0.0
    for index, count in enumerate(histogram):
        if count and below + count >= target:
            return (index + (target - below) / count) * UNCERTAINTY_BIN
        below += count
    return len(histogram) * UNCERTAINTY_BIN


def stats_from_counts(counts: torch.Tensor, num_classes: int) -> Dict[str, float]:
    """The per-iteration ``pseudo/*`` scalars of summed counts (all but the pooled class shares and the
    labeled set's reference); precision and recall only if every batch had annotations."""
    c = dict(zip(count_names(num_classes), counts.tolist()))
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
# The labeled set as the reference, and the pooled class shares


class LabeledSetStatistics:
    """What the labeled training set says a pseudo-labelled batch should look like.

    Args:
        images: labeled images.
        class_counts: ``(C,)`` non-crowd annotated boxes per contiguous class id.
    """

    def __init__(self, images: int, class_counts: Sequence[int]):
        self.images = images
        self.class_counts = [int(count) for count in class_counts]

    @classmethod
    def of(cls, dataset_dicts: Sequence[dict], num_classes: int) -> "LabeledSetStatistics":
        """From Detectron2 dataset dicts (contiguous ``category_id``; crowd boxes are not counted)."""
        counts = [0] * num_classes
        for record in dataset_dicts:
            for annotation in record.get("annotations", ()):
                if not annotation.get("iscrowd", 0) and 0 <= annotation["category_id"] < num_classes:
                    counts[annotation["category_id"]] += 1
        return cls(len(dataset_dicts), counts)

    @property
    def boxes_per_image(self) -> float:
        return sum(self.class_counts) / self.images if self.images else 0.0

    @property
    def class_shares(self) -> List[float]:
        total = sum(self.class_counts)
        return [count / total if total else 0.0 for count in self.class_counts]


class ClassShareWatch:
    """Pools the classification pseudo boxes' class counts over the last ``window`` iterations, compares their
    shares with the labeled set's, and says when one class takes more than ``ratio`` times its labeled share.

    Args:
        labeled: the labeled set's statistics.
        window: iterations pooled (``SOFT_TEACHER.CLASS_SHARE_WARN_ITERS``); 0: no warning, each iteration alone.
        ratio: the share ratio above which to warn (``SOFT_TEACHER.CLASS_SHARE_WARN_RATIO``).
        class_names: the names of the contiguous class ids, for the message.
    """

    def __init__(self, labeled: LabeledSetStatistics, window: int, ratio: float, class_names: Sequence[str]):
        self.labeled_shares = labeled.class_shares
        self.window, self.ratio, self.class_names = window, ratio, list(class_names)
        self._recent: deque = deque(maxlen=max(1, window))
        self._updates = 0
        self._warned_at: Optional[int] = None  # the update of the last warning

    def update(self, class_counts: Sequence[float]) -> Dict[str, float]:
        """Add one iteration's ``(C,)`` counts; the pooled ``pseudo/class_share_*`` scalars (none without boxes)."""
        self._updates += 1
        self._recent.append(np.asarray(class_counts, dtype=np.float64))
        pooled = np.sum(self._recent, axis=0)  # at most window x C counts: nothing to keep a running sum for
        total = pooled.sum()
        if not total:
            return {}
        shares, labeled = pooled / total, np.asarray(self.labeled_shares)
        stats = {"pseudo/class_share_distance": float(np.abs(shares - labeled).sum() / 2)}
        judged = (labeled > 0) & (labeled * total >= MIN_EXPECTED_BOXES)
        if judged.any():
            ratios = np.where(judged, shares / np.where(judged, labeled, 1.0), 0.0)
            stats["pseudo/class_share_max_ratio"] = float(ratios.max())
            self._maybe_warn(ratios, shares, int(total))
        return stats

    def _maybe_warn(self, ratios: np.ndarray, shares: np.ndarray, total: int) -> None:
        """Warn over a full window, and again each ``window`` updates while it lasts."""
        worst = int(ratios.argmax())
        if self.window <= 0 or len(self._recent) < self.window or ratios[worst] <= self.ratio:
            return
        if self._warned_at is not None and self._updates - self._warned_at < self.window:
            return
        self._warned_at = self._updates
        name = self.class_names[worst] if worst < len(self.class_names) else f"class {worst}"
        logger.warning(
            f"Pseudo boxes over the last {self.window} iterations name '{name}' {100 * shares[worst]:.0f}% of the "
            f"time ({total} boxes), {ratios[worst]:.1f}x its share of the labeled boxes "
            f"({100 * self.labeled_shares[worst]:.0f}%). Either the teacher names objects of other classes "
            f"'{name}' (the student then learns that), or it finds '{name}' far more easily than the other classes "
            "(the student then learns those from the labeled images alone). Look at its pseudo labels with "
            "tools/visualize_pseudo_labels.py. If it names other objects as this class (a weak teacher of very few "
            "labeled images does), train the ROI classification without the pseudo classes "
            "(SOFT_TEACHER.UNSUP_LOSSES \"('rpn', 'roi_objectness', 'roi_reg')\"), branch later "
            "(SOFT_TEACHER.BURN_IN_ITERS) or label more images. Where the unlabeled images really hold more of this "
            "class, raise SOFT_TEACHER.CLASS_SHARE_WARN_RATIO."
        )


# ---------------------------------------------------------------------------------------------
# The one call per iteration


def _ranks(indices: Sequence[int]) -> str:
    return f"rank{'s' if len(indices) > 1 else ''} {', '.join(map(str, indices))}"


class PseudoLabelDiagnostics:
    """The ``pseudo/*`` scalars of a training step's :class:`~soft_teacher.modeling.PseudoLabelRecord`.

    Each call counts this rank's batch on the host, adds the counts of every rank with one ``all_reduce``
    (when there are several), and returns the scalars of the summed counts; :class:`ClassShareWatch` pools the
    classification boxes' classes and warns. Every rank must call it at the same iterations. A failure while
    counting (say, non-finite pseudo boxes) travels in the same ``all_reduce``: every rank then raises, naming
    the rank(s) that failed, instead of the others waiting for a collective that never comes.

    Args:
        cls_thresh, initial_thresh: ``SOFT_TEACHER.CLS_PSEUDO_THRESH`` and ``INITIAL_SCORE_THRESH``.
        num_classes: the detector's classes (``MODEL.ROI_HEADS.NUM_CLASSES``).
        labeled: the labeled set's statistics (None: unknown, no statistic compares with it); ``class_names``
            its classes' names.
        class_share_window, class_share_ratio: ``SOFT_TEACHER.CLASS_SHARE_WARN_ITERS`` and ``_RATIO``.
    """

    def __init__(self, cls_thresh: float, initial_thresh: float, num_classes: int,
                 labeled: Optional[LabeledSetStatistics], class_names: Sequence[str], class_share_window: int,
                 class_share_ratio: float):
        self.cls_thresh, self.initial_thresh, self.num_classes = cls_thresh, initial_thresh, num_classes
        self.labeled = labeled
        self.class_shares = None
        if labeled is not None:
            if len(labeled.class_counts) != num_classes:
                raise ValueError(f"The labeled set's statistics cover {len(labeled.class_counts)} classes, the "
                                 f"detector has {num_classes} (MODEL.ROI_HEADS.NUM_CLASSES).")
            self.class_shares = ClassShareWatch(labeled, class_share_window, class_share_ratio, class_names)

    def _local_counts(self, record) -> torch.Tensor:
        annotations = None
        if record.hidden_instances is not None:
            annotations = [  # where the mapper left them, on the CPU
                instances_to_view(hidden.to("cpu"), torch.as_tensor(matrix).cpu(), candidates.image_size)
                for hidden, matrix, candidates in zip(record.hidden_instances, record.teacher_matrices,
                                                      record.candidates)
            ]
        return pseudo_label_counts(record.candidates, record.rpn, record.cls, record.reg, self.cls_thresh,
                                   self.num_classes, annotations, self.initial_thresh)

    def summed_counts(self, record, device: torch.device) -> torch.Tensor:
        """This rank's counts of ``record`` added over all ranks (one ``all_reduce`` on ``device``).

        Raises:
            FloatingPointError: some rank's pseudo boxes are not finite (on every rank).
            RuntimeError: counting failed otherwise on another rank (on every rank; the failing rank
                re-raises its own error).
        """
        world_size, rank = comm.get_world_size(), comm.get_rank()
        size = len(count_names(self.num_classes))
        error: Optional[BaseException] = None
        try:
            counts = self._local_counts(record)
        except Exception as err:  # shared with every rank below, then raised on all of them
            error, counts = err, torch.zeros(size, dtype=torch.float64)
        failures = torch.zeros(world_size, dtype=torch.float64)  # per rank: 0 fine, 1 non-finite, 2 other
        if error is not None:
            failures[rank] = 1.0 if isinstance(error, FloatingPointError) else 2.0
        summed = torch.cat([counts, failures])
        if world_size > 1:
            summed = summed.to(device)  # NCCL reduces GPU tensors
            torch.distributed.all_reduce(summed)
            summed = summed.cpu()
        counts, flags = summed[:size], summed[size:].tolist()
        non_finite = [index for index, flag in enumerate(flags) if flag == 1.0]
        other = [index for index, flag in enumerate(flags) if flag == 2.0]
        if not non_finite and not other:
            return counts
        if error is not None and not isinstance(error, FloatingPointError):
            raise error
        elsewhere = (f"counting the pseudo labels failed on {_ranks(other)}, whose log has the error. Every rank "
                     "stops here, so that none waits for the others.")
        if non_finite:
            raise FloatingPointError(f"{NON_FINITE_MESSAGE} ({_ranks(non_finite)})"
                                     + (f"; {elsewhere}" if other else "")) from error
        raise RuntimeError(elsewhere[0].upper() + elsewhere[1:])

    def __call__(self, record, device: torch.device = torch.device("cpu")) -> Dict[str, float]:
        """The ``pseudo/*`` scalars of one step's record (see the module's docstring)."""
        counts = self.summed_counts(record, device)
        stats = stats_from_counts(counts, self.num_classes)
        if self.labeled is not None:
            stats["pseudo/boxes_per_image_labeled"] = self.labeled.boxes_per_image
            stats.update(self.class_shares.update(counts[len(counts) - self.num_classes:].tolist()))
        return stats
