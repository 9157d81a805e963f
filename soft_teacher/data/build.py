"""The training loaders: semi-supervised (a labeled and an unlabeled stream, zipped per
iteration) and supervised (the labeled stream alone, for baselines).

Each stream is a Detectron2 training loader of its own: an infinite seeded
``TrainingSampler`` sharded over ranks (each rank draws its own part of one shared
permutation), ``DATALOADER.NUM_WORKERS`` workers, aspect-ratio grouping
(``DATALOADER.ASPECT_RATIO_GROUPING``). The streams are independent, so the
labeled/unlabeled ratio is exact at every iteration whatever the set sizes.

Randomness: with ``SEED >= 0`` the samplers and the workers' augmentation RNGs are
seeded from it (distinct per stream, and per rank for the workers), so a run is
reproducible. With ``DATALOADER.NUM_WORKERS = 0`` augmentations draw from the main
process's global numpy RNG, which Detectron2's ``default_setup`` seeds with
``SEED + rank``.
"""
import logging
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
from detectron2.data.build import filter_images_with_only_crowd_annotations
from detectron2.data.samplers import TrainingSampler
from detectron2.utils import comm

from ..diagnostics import LabeledSetStatistics

from .datasets.custom import register_custom_datasets
from .datasets.validation import check_categories, check_image_files
from .mappers import LabeledDatasetMapper, UnlabeledDatasetMapper

__all__ = [
    "SemiSupervisedLoader",
    "build_semisup_train_loader",
    "build_supervised_train_loader",
    "per_rank_batch_sizes",
]

logger = logging.getLogger(__name__)

_LABELED, _UNLABELED = 0, 1


class SemiSupervisedLoader:
    """Infinite iterable of ``{"labeled": List[dict], "unlabeled": List[dict]}``, one item per iteration and rank.

    Args:
        labeled_loader, unlabeled_loader: infinite iterables of per-rank batches (lists of dicts).
        unlabeled_mapper: the unlabeled stream's mapper, whose ``num_skipped`` (if it has
            one) counts the unreadable images skipped so far.
        labeled_statistics: the labeled set's images and boxes per class, the reference of the
            pseudo-label diagnostics.
    """

    def __init__(self, labeled_loader, unlabeled_loader, unlabeled_mapper=None,
                 labeled_statistics: Optional[LabeledSetStatistics] = None):
        self.labeled_loader = labeled_loader
        self.unlabeled_loader = unlabeled_loader
        self.unlabeled_mapper = unlabeled_mapper
        self.labeled_statistics = labeled_statistics

    def __iter__(self) -> Iterator[dict]:
        for labeled, unlabeled in zip(self.labeled_loader, self.unlabeled_loader):
            yield {"labeled": labeled, "unlabeled": unlabeled}

    @property
    def num_skipped_unlabeled(self) -> int:
        """Unlabeled images skipped so far because they were missing or unreadable."""
        return getattr(self.unlabeled_mapper, "num_skipped", 0)


def per_rank_batch_sizes(cfg) -> tuple:
    """``(labeled, unlabeled)`` images per iteration on each rank; raise if the totals do not divide."""
    world_size = comm.get_world_size()
    sizes = []
    for key in ("IMS_PER_BATCH", "IMS_PER_BATCH_UNLABELED"):
        total = cfg.SOLVER[key]
        if total <= 0 or total % world_size:
            raise ValueError(f"SOLVER.{key} = {total} is the total over all GPUs and must be a positive multiple "
                             f"of the number of GPUs ({world_size}).")
        sizes.append(total // world_size)
    return tuple(sizes)


def _seeds(cfg, stream: int):
    """(sampler seed shared by all ranks, worker seed of this rank) of a stream, or (None, None) for SEED < 0."""
    if cfg.SEED < 0:
        return None, None
    sampler_seed = np.random.SeedSequence([cfg.SEED, stream]).generate_state(1)[0]
    worker_seed = np.random.SeedSequence([cfg.SEED, stream, comm.get_rank()]).generate_state(1)[0]
    return int(sampler_seed), int(worker_seed)


def _stream_loader(cfg, dataset_dicts: List[dict], mapper, total_batch_size: int, stream: int):
    sampler_seed, worker_seed = _seeds(cfg, stream)
    return build_detection_train_loader(
        dataset_dicts,
        mapper=mapper,
        sampler=TrainingSampler(len(dataset_dicts), seed=sampler_seed),
        total_batch_size=total_batch_size,
        aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        seed=worker_seed,
    )


def _load_training_sets(cfg, unlabeled_names: Sequence[str]
                        ) -> Tuple[List[dict], List[dict], Optional[LabeledSetStatistics]]:
    """The dicts of ``DATASETS.TRAIN`` and of the unlabeled sets ``unlabeled_names``, checked before training,
    and the labeled set's statistics (None without unlabeled sets, whose pseudo boxes they are the reference of).

    The statistics count every labeled image, also those ``DATALOADER.FILTER_EMPTY_ANNOTATIONS`` then leaves
    out of training: they are the reference of the pseudo boxes per unlabeled image, and no unlabeled image is
    left out for holding no object.

    Both loaders load their sets here, so the config's custom sets are registered here (for a
    config that did not come through ``load_config``) and the checks run once per process:
    every labeled image file exists (unreadable unlabeled images are skipped by their mapper
    instead), and the sets' categories agree with each other, the test sets and
    ``MODEL.ROI_HEADS.NUM_CLASSES``.
    """
    register_custom_datasets(cfg)
    labeled = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=False,
        min_keypoints=cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0,
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
    )
    statistics = LabeledSetStatistics.of(labeled, cfg.MODEL.ROI_HEADS.NUM_CLASSES) if unlabeled_names else None
    if cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS and labeled and "annotations" in labeled[0]:
        labeled = filter_images_with_only_crowd_annotations(labeled)
        if not labeled:
            raise ValueError(f"No image of {', '.join(cfg.DATASETS.TRAIN)} has a non-crowd box to train on: check "
                             "that the annotations' image_id values name the json's images.")
    check_image_files(labeled, cfg.DATASETS.TRAIN)
    unlabeled = []
    if unlabeled_names:
        unlabeled = get_detection_dataset_dicts(unlabeled_names, filter_empty=False, check_consistency=False)
    check_categories(cfg.DATASETS.TRAIN, unlabeled_names, cfg.DATASETS.TEST, cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    return labeled, unlabeled, statistics


def build_supervised_train_loader(cfg, mapper=None):
    """Detectron2's train loader of ``DATASETS.TRAIN`` alone, for plain detectors (supervised baselines).

    The sets are loaded and checked as for :func:`build_semisup_train_loader`; the default
    mapper is :class:`LabeledDatasetMapper`, the labeled view of the Soft Teacher runs, so
    that baselines and Soft Teacher runs see the same labeled augmentations.
    """
    labeled, _, _ = _load_training_sets(cfg, ())
    return build_detection_train_loader(cfg, mapper=mapper or LabeledDatasetMapper(cfg, is_train=True), dataset=labeled)


def build_semisup_train_loader(cfg, labeled_mapper=None, unlabeled_mapper=None) -> SemiSupervisedLoader:
    """Build the training loader of ``DATASETS.TRAIN`` (labeled) and ``DATASETS.TRAIN_UNLABELED``.

    Each item holds ``SOLVER.IMS_PER_BATCH / world_size`` labeled dicts (see
    :class:`LabeledDatasetMapper`) and ``SOLVER.IMS_PER_BATCH_UNLABELED / world_size``
    unlabeled dicts (see :class:`UnlabeledDatasetMapper`) for this rank. The config's custom
    sets (``DATASETS.CUSTOM_*``) are registered first. The labeled image files must exist; the
    sets' categories are checked against each other, the test sets and ``MODEL.ROI_HEADS.NUM_CLASSES``.

    Args:
        labeled_mapper, unlabeled_mapper: replace the default mappers built from ``cfg``.
    """
    per_rank_batch_sizes(cfg)
    if not cfg.DATASETS.TRAIN:
        raise ValueError("DATASETS.TRAIN is empty: name the labeled training set(s).")
    if not cfg.DATASETS.TRAIN_UNLABELED:
        raise ValueError("DATASETS.TRAIN_UNLABELED is empty: name the unlabeled training set(s) (a folder of "
                         "images can be declared in DATASETS.CUSTOM_UNLABELED_FOLDERS).")
    labeled, unlabeled, statistics = _load_training_sets(cfg, cfg.DATASETS.TRAIN_UNLABELED)
    logger.info("Semi-supervised loader: %d labeled images (%s), %d unlabeled images (%s).", len(labeled),
                ", ".join(cfg.DATASETS.TRAIN), len(unlabeled), ", ".join(cfg.DATASETS.TRAIN_UNLABELED))
    labeled_mapper = labeled_mapper or LabeledDatasetMapper(cfg, is_train=True)
    unlabeled_mapper = unlabeled_mapper or UnlabeledDatasetMapper(cfg, is_train=True)
    return SemiSupervisedLoader(
        _stream_loader(cfg, labeled, labeled_mapper, cfg.SOLVER.IMS_PER_BATCH, _LABELED),
        _stream_loader(cfg, unlabeled, unlabeled_mapper, cfg.SOLVER.IMS_PER_BATCH_UNLABELED, _UNLABELED),
        unlabeled_mapper,
        statistics,
    )
