"""The semi-supervised trainer: Detectron2's DefaultTrainer with a teacher that follows the student.

Per iteration (Detectron2's SimpleTrainer / AMPTrainer step): one item of the train loader,
``{"labeled": [...], "unlabeled": [...]}``, the model's ``sup_*`` and ``unsup_*`` losses, one
optimizer step on the student; then the :class:`~soft_teacher.engine.hooks.TeacherEMA` hook
updates the teacher. A config with a plain detector (``MODEL.META_ARCHITECTURE:
GeneralizedRCNN``) trains it like DefaultTrainer, so supervised baselines share train_net.py.
A NaN or infinite loss stops training on every rank, naming the iteration and each such loss.
"""
import logging
import os
import weakref
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from detectron2.config import CfgNode
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, create_ddp_model, hooks
from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOEvaluator, verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch import nn

from soft_teacher.config import EVAL_MODELS
from soft_teacher.data import build_semisup_train_loader, build_supervised_train_loader
from soft_teacher.diagnostics import PseudoLabelDiagnostics

from .checkpoint import SoftTeacherCheckpointer
from .hooks import (NoPseudoBoxWarning, PseudoLabelPrinter, PseudoLabelStatistics, SkippedUnlabeledImages, TeacherEMA,
                    unwrap_model)

logger = logging.getLogger(__name__)


def is_semi_supervised(cfg: CfgNode) -> bool:
    """Whether ``cfg`` trains a Soft Teacher model on labeled and unlabeled sets."""
    return cfg.MODEL.META_ARCHITECTURE == "SoftTeacher"


def is_teacher_student(model: nn.Module) -> bool:
    """Whether ``model`` (possibly wrapped in DistributedDataParallel) has ``.teacher`` and ``.student`` modules."""
    model = unwrap_model(model)
    return isinstance(getattr(model, "teacher", None), nn.Module) and isinstance(
        getattr(model, "student", None), nn.Module
    )


def models_to_evaluate(cfg: CfgNode) -> List[str]:
    """``["teacher"]``, ``["student"]`` or ``["teacher", "student"]`` from ``SOFT_TEACHER.EVAL_MODEL``."""
    choice = cfg.SOFT_TEACHER.EVAL_MODEL
    if choice not in EVAL_MODELS:
        raise ValueError(f"SOFT_TEACHER.EVAL_MODEL must be one of {EVAL_MODELS}, got '{choice}'.")
    return ["teacher", "student"] if choice == "both" else [choice]


def verify_expected_results(cfg: CfgNode, results: Dict) -> bool:
    """Detectron2's ``verify_results`` (``TEST.EXPECTED_RESULTS``) on the results of the first evaluated model.

    ``results`` is what :meth:`SoftTeacherTrainer.test` returns: for a teacher-student model,
    one entry per evaluated model (``{"teacher": {...}}``), otherwise Detectron2's own.
    """
    first = models_to_evaluate(cfg)[0]
    return verify_results(cfg, results[first] if first in results else results)


def check_losses_finite(loss_dict: Mapping[str, torch.Tensor], iteration: int) -> None:
    """Raise FloatingPointError naming ``iteration`` and every loss that is NaN or infinite.

    With several processes, every rank raises when any rank has a non-finite loss, and the message
    names each loss with its rank. (Detectron2 raises on the main process only: the others would hang.)
    """
    bad = {name: loss.detach().float().item() for name, loss in loss_dict.items() if not torch.isfinite(loss).all()}
    bad_per_rank = comm.all_gather(bad) if comm.get_world_size() > 1 else [bad]
    listed = [
        f"{name} = {value}" + (f" (rank {rank})" if len(bad_per_rank) > 1 else "")
        for rank, rank_bad in enumerate(bad_per_rank)
        for name, value in rank_bad.items()
    ]
    if listed:
        raise FloatingPointError(
            f"Loss became infinite or NaN at iteration {iteration}: {', '.join(listed)}. "
            "Try a lower SOLVER.BASE_LR or a longer SOLVER.WARMUP_ITERS, enable SOLVER.CLIP_GRADIENTS, "
            "and check the annotations of the batch (degenerate or out-of-image boxes)."
        )


# Warn when fitting the config to the number of processes multiplies its iterations by this much or more.
SCHEDULE_STRETCH_WARNING = 4


def log_schedule(cfg: CfgNode, scaled: CfgNode, world_size: int) -> None:
    """Log the schedule that trains (``scaled``: ``cfg`` after ``SOLVER.REFERENCE_WORLD_SIZE`` scaling to
    ``world_size`` processes), and warn when the scaling multiplies ``SOLVER.MAX_ITER`` by
    :data:`SCHEDULE_STRETCH_WARNING` or more, saying how to keep the config's schedule."""
    solver = scaled.SOLVER
    semi = is_semi_supervised(scaled)
    images = f"{solver.IMS_PER_BATCH} labeled" + (f" + {solver.IMS_PER_BATCH_UNLABELED} unlabeled" if semi else "")
    per_gpu = f"{solver.IMS_PER_BATCH // world_size} labeled" + (
        f" + {solver.IMS_PER_BATCH_UNLABELED // world_size} unlabeled" if semi else "")
    line = (f"Schedule on {world_size} process{'es' if world_size > 1 else ''}: {solver.MAX_ITER} iterations of "
            f"{images} images ({per_gpu} per process), learning rate {solver.BASE_LR:g}, steps "
            f"{tuple(solver.STEPS)}, warm-up {solver.WARMUP_ITERS} iterations")
    if semi:
        st = scaled.SOFT_TEACHER
        horizon = f"{1 / (1 - st.EMA_MOMENTUM):.0f} iterations" if st.EMA_MOMENTUM < 1 else "frozen"
        line += (f"; teacher EMA momentum {st.EMA_MOMENTUM:g} (a horizon of about {horizon}), burn-in "
                 f"{st.BURN_IN_ITERS} iterations")
    logger.info(line + ".")
    reference = cfg.SOLVER.REFERENCE_WORLD_SIZE
    if not reference or scaled.SOLVER.MAX_ITER < SCHEDULE_STRETCH_WARNING * cfg.SOLVER.MAX_ITER:
        return
    factor = reference // world_size if reference % world_size == 0 else reference / world_size
    keep = [
        "SOLVER.REFERENCE_WORLD_SIZE", str(world_size),
        "SOLVER.IMS_PER_BATCH", str(solver.IMS_PER_BATCH),
        "SOLVER.BASE_LR", f"{solver.BASE_LR:g}",
    ] + (["SOLVER.IMS_PER_BATCH_UNLABELED", str(solver.IMS_PER_BATCH_UNLABELED)] if semi else [])
    logger.warning(
        f"SOLVER.REFERENCE_WORLD_SIZE is {reference} but training runs on {world_size} process"
        f"{'es' if world_size > 1 else ''}: to keep {per_gpu} images per process, Detectron2 stretched the "
        f"schedule {factor}x, to {solver.MAX_ITER} iterations (the config says {cfg.SOLVER.MAX_ITER}) at "
        f"{solver.BASE_LR:g} learning rate. To train the config's {cfg.SOLVER.MAX_ITER} iterations on these "
        f"batches instead (fewer images seen), add: {' '.join(keep)}; or start from "
        "configs/soft_teacher_small_data.yaml, written for one GPU."
    )


class _FiniteLossCheck:
    """For Detectron2's step trainers: :func:`check_losses_finite` on each step's losses before they are logged."""

    def _write_metrics(self, loss_dict, data_time: float, prefix: str = "", iter: Optional[int] = None) -> None:
        check_losses_finite(loss_dict, self.iter if iter is None else iter)
        super()._write_metrics(loss_dict, data_time, prefix=prefix, iter=iter)


class _FiniteLossSimpleTrainer(_FiniteLossCheck, SimpleTrainer):
    pass


class _FiniteLossAMPTrainer(_FiniteLossCheck, AMPTrainer):
    pass


class SoftTeacherTrainer(DefaultTrainer):
    """DefaultTrainer for Soft Teacher (and plain supervised) detectors.

    Differences from DefaultTrainer:

    - the train loader is ``soft_teacher.data.build_semisup_train_loader`` for Soft Teacher configs;
    - ``SOLVER.REFERENCE_WORLD_SIZE`` scaling also scales ``SOLVER.IMS_PER_BATCH_UNLABELED``;
    - hooks: :class:`TeacherEMA` and :class:`NoPseudoBoxWarning` for a teacher-student model,
      and the :class:`PseudoLabelPrinter` console writer;
    - checkpoints with :class:`SoftTeacherCheckpointer` (both models; plain Detectron2 weights
      load into both);
    - periodic evaluation (``TEST.EVAL_PERIOD``) with COCOEvaluator of the teacher and the student,
      reported as ``teacher/bbox/AP``, ``student/bbox/AP``, ...; ``test()`` alone (``--eval-only``)
      evaluates the models ``SOFT_TEACHER.EVAL_MODEL`` names;
    - a NaN/Inf loss stops training naming the iteration and the loss;
    - datasets whose categories differ from each other or from the model stop before training;
    - a CPU model (``MODEL.DEVICE cpu``) trains with several processes too (gloo).
    """

    def __init__(self, cfg: CfgNode):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        scaled = self.auto_scale_workers(cfg, comm.get_world_size())
        log_schedule(cfg, scaled, comm.get_world_size())
        cfg = scaled
        if cfg.SOLVER.AMP.ENABLED and not cfg.MODEL.DEVICE.startswith("cuda"):
            raise ValueError(
                f"SOLVER.AMP.ENABLED (mixed precision) needs a CUDA device but MODEL.DEVICE is "
                f"'{cfg.MODEL.DEVICE}': set SOLVER.AMP.ENABLED False."
            )
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)

        # DDP averages the gradients of the parameters that get them: the student's (the teacher's never
        # require grad). It wraps the whole model, whose one forward call per step runs both losses.
        device_ids = None if cfg.MODEL.DEVICE == "cpu" else [comm.get_local_rank()]
        model = create_ddp_model(model, broadcast_buffers=False, device_ids=device_ids)
        step_trainer = _FiniteLossAMPTrainer if cfg.SOLVER.AMP.ENABLED else _FiniteLossSimpleTrainer
        self._trainer = step_trainer(model, data_loader, optimizer)

        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        # The trainer's state holds the iteration, the optimizer, the AMP grad scaler and the scheduler.
        self.checkpointer = SoftTeacherCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        """The train loader; it checks that the labeled images exist and that the categories agree.

        Soft Teacher configs: ``soft_teacher.data.build_semisup_train_loader``, yielding
        ``{"labeled": [...], "unlabeled": [...]}``. Other configs: Detectron2's loader of
        ``DATASETS.TRAIN`` with the labeled view's augmentations (the same as the Soft Teacher
        runs', so baselines compare fairly).
        """
        if is_semi_supervised(cfg):
            return build_semisup_train_loader(cfg)
        if cfg.DATASETS.TRAIN_UNLABELED:
            logger.warning(
                f"MODEL.META_ARCHITECTURE is {cfg.MODEL.META_ARCHITECTURE}, which trains on labeled images only: "
                f"DATASETS.TRAIN_UNLABELED {tuple(cfg.DATASETS.TRAIN_UNLABELED)} is ignored."
            )
        return build_supervised_train_loader(cfg)

    def build_hooks(self):
        """DefaultTrainer's hooks, with the teacher's EMA and the pseudo-box watch right after the LR scheduler.

        So a checkpoint or an evaluation at iteration ``i`` sees the teacher updated at ``i``.
        """
        ret = super().build_hooks()
        if is_teacher_student(self.model):
            # Periodic evaluation reports both models, whatever SOFT_TEACHER.EVAL_MODEL says
            # (that key chooses what --eval-only and inference use), except during the burn-in,
            # when the teacher is still the untrained copy it was built as.
            def evaluate_teacher_and_student():
                models = ("teacher", "student")
                burn_in = self.cfg.SOFT_TEACHER.BURN_IN_ITERS
                if min(self.iter, self.max_iter - 1) + 1 < burn_in:  # after training, self.iter == max_iter
                    logger.info(f"Evaluating the student only: the teacher is an untrained copy until the burn-in "
                                f"ends after iteration {burn_in} (SOFT_TEACHER.BURN_IN_ITERS).")
                    models = ("student",)
                self._last_eval_results = self.test(self.cfg, self.model, models=models)
                return self._last_eval_results

            ret = [
                hooks.EvalHook(self.cfg.TEST.EVAL_PERIOD, evaluate_teacher_and_student)
                if isinstance(hook, hooks.EvalHook) else hook
                for hook in ret
            ]
            position = next(i for i, hook in enumerate(ret) if isinstance(hook, hooks.LRScheduler)) + 1
            st = self.cfg.SOFT_TEACHER
            ret[position:position] = [
                TeacherEMA(st.EMA_MOMENTUM, st.BURN_IN_ITERS),
                PseudoLabelStatistics(self.build_diagnostics(self.cfg, self.data_loader)),
                NoPseudoBoxWarning(st.NO_PSEUDO_BOX_WARN_ITERS),
            ]
            if hasattr(self.data_loader, "num_skipped_unlabeled"):
                ret.insert(position, SkippedUnlabeledImages(self.data_loader))
        return ret

    @staticmethod
    def build_diagnostics(cfg: CfgNode, data_loader) -> PseudoLabelDiagnostics:
        """The pseudo-label diagnostics of a Soft Teacher run, with the labeled set of ``data_loader`` (its
        ``labeled_statistics``; a loader without them gets the statistics that need none)."""
        st = cfg.SOFT_TEACHER
        labeled = getattr(data_loader, "labeled_statistics", None)
        class_names = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).get("thing_classes", []) if cfg.DATASETS.TRAIN else []
        if labeled is not None:
            shares = ", ".join(f"{name} {100 * share:.0f}%" for name, share in zip(class_names, labeled.class_shares))
            logger.info(f"Labeled set: {labeled.images} images, {labeled.boxes_per_image:.2f} boxes per image; "
                        f"class shares: {shares}. The pseudo boxes' class shares are compared with these "
                        "(pseudo/class_share_*).")
        return PseudoLabelDiagnostics(st.CLS_PSEUDO_THRESH, st.INITIAL_SCORE_THRESH, cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                                      labeled, class_names, st.CLASS_SHARE_WARN_ITERS, st.CLASS_SHARE_WARN_RATIO)

    def build_writers(self):
        """Detectron2's console, metrics.json and TensorBoard writers, and the pseudo-label console line."""
        return super().build_writers() + [PseudoLabelPrinter()]

    def train(self):
        """Run training; returns the last evaluation results (``{"teacher": {...}, ...}``) if any."""
        TrainerBase.train(self, self.start_iter, self.max_iter)
        if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
            verify_expected_results(self.cfg, self._last_eval_results)
        return getattr(self, "_last_eval_results", None)

    @staticmethod
    def auto_scale_workers(cfg: CfgNode, num_workers: int) -> CfgNode:
        """DefaultTrainer.auto_scale_workers, also scaling ``SOLVER.IMS_PER_BATCH_UNLABELED`` and
        ``SOFT_TEACHER.BURN_IN_ITERS``.

        The unlabeled images per GPU stay ``IMS_PER_BATCH_UNLABELED / REFERENCE_WORLD_SIZE``, and the
        burn-in ends at the same fraction of the schedule (like ``SOLVER.STEPS``).
        """
        reference = cfg.SOLVER.REFERENCE_WORLD_SIZE
        scaled = DefaultTrainer.auto_scale_workers(cfg, num_workers)
        if scaled is cfg:
            return cfg
        if cfg.SOLVER.IMS_PER_BATCH_UNLABELED % reference != 0:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH_UNLABELED ({cfg.SOLVER.IMS_PER_BATCH_UNLABELED}) must be a multiple of "
                f"SOLVER.REFERENCE_WORLD_SIZE ({reference})."
            )
        frozen = scaled.is_frozen()
        scaled.defrost()
        scaled.SOLVER.IMS_PER_BATCH_UNLABELED = cfg.SOLVER.IMS_PER_BATCH_UNLABELED // reference * num_workers
        # The expression Detectron2 scales SOLVER.CHECKPOINT_PERIOD with: a twin that checkpoints every
        # BURN_IN_ITERS keeps saving exactly where the branch starts, whatever the rounding.
        scale = num_workers / reference
        scaled.SOFT_TEACHER.BURN_IN_ITERS = int(round(cfg.SOFT_TEACHER.BURN_IN_ITERS / scale))
        if frozen:
            scaled.freeze()
        return scaled

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: str = None):
        """COCOEvaluator; its files (predictions, cached COCO json) go to ``output_folder`` (default
        ``OUTPUT_DIR/inference``), in a subfolder per test set when ``DATASETS.TEST`` has several (each set's
        ``coco_instances_results.json`` would overwrite the previous one's)."""
        folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        if len(cfg.DATASETS.TEST) > 1:
            folder = os.path.join(folder, dataset_name)
        return COCOEvaluator(dataset_name, output_dir=folder)

    @classmethod
    def test(cls, cfg: CfgNode, model, evaluators=None, models: Sequence[str] = ()):
        """Evaluate on ``DATASETS.TEST``.

        For a teacher-student model, each of ``models`` (default: those ``SOFT_TEACHER.EVAL_MODEL``
        names) is evaluated on its own and the results are nested under its name
        (``{"teacher": {"bbox": {"AP": ...}}}``, which the EvalHook logs as ``teacher/bbox/AP``); evaluation files go to
        ``OUTPUT_DIR/inference/<teacher|student>`` (a subfolder per test set with several: :meth:`build_evaluator`).
        Other models: DefaultTrainer.test.
        """
        model = unwrap_model(model)
        if not is_teacher_student(model):
            return super().test(cfg, model, evaluators)
        if not cfg.DATASETS.TEST:
            return {}
        results = OrderedDict()
        for name in models or models_to_evaluate(cfg):
            logger.info(f"Evaluating the {name} on {tuple(cfg.DATASETS.TEST)}")
            model_evaluators = evaluators or [
                cls.build_evaluator(cfg, dataset, os.path.join(cfg.OUTPUT_DIR, "inference", name))
                for dataset in cfg.DATASETS.TEST
            ]
            results[name] = super().test(cfg, getattr(model, name), model_evaluators)
        return results
