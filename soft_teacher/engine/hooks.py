"""Hooks and a console writer of the semi-supervised trainer: the teacher's EMA, the pseudo-box watch,
skipped images, and the pseudo-label statistics line."""
import logging

from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.events import EventWriter, get_event_storage
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from soft_teacher.modeling.ema import ema_momentum, ema_update

logger = logging.getLogger(__name__)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a (Distributed)DataParallel wrapper, or ``model`` itself."""
    return model.module if isinstance(model, (DataParallel, DistributedDataParallel)) else model


class TeacherEMA(HookBase):
    """Keeps the teacher an exponential moving average of the student, with the reference's warm-up.

    After the optimizer step of iteration ``i`` (``after_step``), with ``B = burn_in_iters`` and
    ``k = i + 1 - B`` (the update's index, counting as update 0 the end-of-burn-in copy, or with
    ``B = 0`` the teacher's construction as a copy of the student):

    - ``k < 0`` (``i + 1 < B``): nothing (supervised-only burn-in; the teacher is unused);
    - otherwise: ``teacher <- m_k * teacher + (1 - m_k) * student`` with
      ``m_k = min(m, 1 - 1 / (k + 1))`` (:func:`~soft_teacher.modeling.ema.ema_momentum`).

    So with ``B > 0`` the update after the last burn-in iteration (``k = 0``, ``m_0 = 0``) makes
    the teacher a copy of the student, and the next ones make it the running mean of the
    students since (momentum 1/2, 2/3, ...) until the momentum reaches ``m``. With ``B = 0`` the
    ``k = 0`` copy is the teacher's construction (teacher and student start equal); the update
    after iteration 0 is ``k = 1`` (momentum 1/2), as in the reference, whose ``MeanTeacher``
    hook (``warm_up=0``) copies before iteration 0 and uses ``min(m, 1 - 1 / (i + 1))`` before
    iteration ``i``. ``k`` comes from the trainer's iteration, so a resumed run continues the
    same sequence.

    Logs ``ema_momentum``: the ``m_k`` used. Must run on every rank: each keeps its own teacher,
    whose parameters stay identical because DDP keeps the students' identical (plain BatchNorm
    running statistics are per rank, as in Detectron2).
    """

    def __init__(self, momentum: float, burn_in_iters: int = 0):
        """
        Args:
            momentum: the final momentum ``m`` in [0, 1] (``SOFT_TEACHER.EMA_MOMENTUM``).
            burn_in_iters: supervised-only iterations (``SOFT_TEACHER.BURN_IN_ITERS``).
        """
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"SOFT_TEACHER.EMA_MOMENTUM must be in [0, 1], got {momentum}.")
        if burn_in_iters < 0:
            raise ValueError(f"SOFT_TEACHER.BURN_IN_ITERS must be >= 0, got {burn_in_iters}.")
        self._momentum = momentum
        self._burn_in_iters = burn_in_iters

    def num_updates_before(self, iteration: int) -> int:
        """``k`` of the update after iteration ``iteration``: ``iteration + 1 - burn_in_iters`` (< 0: none)."""
        return iteration + 1 - self._burn_in_iters

    def after_step(self):
        num_updates = self.num_updates_before(self.trainer.iter)
        if num_updates < 0:
            return
        model = unwrap_model(self.trainer.model)
        momentum = ema_momentum(self._momentum, num_updates)
        ema_update(model.teacher, model.student, momentum)
        if num_updates == 0:
            logger.info(f"Burn-in finished after {self._burn_in_iters} iterations: the teacher is a copy of the "
                        "student.")
        self.trainer.storage.put_scalar("ema_momentum", momentum, smoothing_hint=False)


class PseudoLabelStatistics(HookBase):
    """Writes the ``pseudo/*`` statistics of each step's pseudo labels (:mod:`soft_teacher.diagnostics`).

    After the optimizer step it hands the model's ``last_pseudo_labels`` (left by the step's forward; None
    during the burn-in, when nothing is written) to a :class:`~soft_teacher.diagnostics.PseudoLabelDiagnostics`,
    one call with one collective across ranks, and puts the scalars into the EventStorage for the writers.
    Must run on every rank, before :class:`NoPseudoBoxWarning` and Detectron2's writers.
    """

    def __init__(self, diagnostics):
        self._diagnostics = diagnostics

    def after_step(self):
        model = unwrap_model(self.trainer.model)
        record = getattr(model, "last_pseudo_labels", None)  # a teacher-student model that keeps none: no stats
        if record is None:
            return
        stats = self._diagnostics(record, model.device)
        self.trainer.storage.put_scalars(**stats)


class NoPseudoBoxWarning(HookBase):
    """Warns when no pseudo box passes the thresholds for ``patience`` iterations in a row.

    Reads ``pseudo/boxes_per_image_cls`` (pseudo boxes per unlabeled image with score >=
    ``SOFT_TEACHER.CLS_PSEUDO_THRESH``), which :class:`PseudoLabelStatistics` puts into the EventStorage in
    each iteration with unsupervised losses; iterations without it (burn-in) are not counted. Warns
    at ``patience`` zero iterations in a row and again every ``patience`` more. With several processes the
    scalar covers every rank's images, so all ranks warn together or not at all.
    """

    KEY = "pseudo/boxes_per_image_cls"

    def __init__(self, patience: int):
        """
        Args:
            patience: consecutive iterations without pseudo boxes before warning
                (``SOFT_TEACHER.NO_PSEUDO_BOX_WARN_ITERS``); 0 disables the warning.
        """
        self._patience = patience
        self._streak = 0

    def after_step(self):
        if self._patience <= 0:
            return
        value_and_iter = self.trainer.storage.latest().get(self.KEY)
        if value_and_iter is None or value_and_iter[1] != self.trainer.iter:
            return
        if value_and_iter[0] > 0:
            self._streak = 0
            return
        self._streak += 1
        if self._streak % self._patience == 0:
            first = self.trainer.iter - self._streak + 1
            logger.warning(
                f"No pseudo box passed the thresholds in {self._streak} iterations in a row "
                f"(iterations {first} to {self.trainer.iter}): the unlabeled images give the student no "
                "foreground targets. Likely causes: the unlabeled images show classes the labeled set does "
                "not have (class-list mismatch); the teacher is still too weak (raise SOFT_TEACHER.BURN_IN_ITERS "
                "or start from better MODEL.WEIGHTS); SOFT_TEACHER.INITIAL_SCORE_THRESH / CLS_PSEUDO_THRESH are "
                "too high for this data."
            )


class SkippedUnlabeledImages(HookBase):
    """Logs ``data/unlabeled_images_skipped``: unlabeled images skipped so far as missing or unreadable.

    Reads ``num_skipped_unlabeled`` of the train loader (``soft_teacher.data``'s semi-supervised
    loader counts them over all its workers) every ``period`` iterations (Detectron2's writers
    print every 20) and after the last one; with several processes, the total of all ranks (one
    ``all_gather`` of a number, on those iterations only). The mapper itself warns with each
    file name, in its own rank's log.
    """

    KEY = "data/unlabeled_images_skipped"

    def __init__(self, loader, period: int = 20):
        self._loader = loader
        self._period = period

    def after_step(self):
        iteration = self.trainer.iter
        if (iteration + 1) % self._period and iteration != self.trainer.max_iter - 1:
            return
        count = self._loader.num_skipped_unlabeled
        if comm.get_world_size() > 1:
            count = sum(comm.all_gather(count))
        self.trainer.storage.put_scalar(self.KEY, count, smoothing_hint=False)


def _on_console(name: str) -> bool:
    """``ema_momentum`` and ``pseudo/*``, less other thresholds' figures, the outer uncertainty percentiles and the
    labeled set's constant boxes per image."""
    if name == "ema_momentum":
        return True
    return name.startswith("pseudo/") and "_at_" not in name and name not in (
        "pseudo/uncertainty_p10", "pseudo/uncertainty_p90", "pseudo/boxes_per_image_labeled")


class PseudoLabelPrinter(EventWriter):
    """Logs one line per write with the pseudo-label statistics and the EMA momentum.

    ``pseudo/*`` scalars (pseudo boxes per image for the RPN, classification and regression
    losses, teacher score, jitter-uncertainty median, precision and recall against hidden
    annotations; the other thresholds' precision/recall and uncertainty percentiles only go to
    metrics.json and TensorBoard, see :mod:`soft_teacher.diagnostics`) are median-smoothed
    over the last ``window_size`` iterations, like CommonMetricPrinter's losses; ``ema_momentum``
    is its latest value. Writes nothing while none of them has been logged in that window
    (e.g. during burn-in) or since the last line. Complements CommonMetricPrinter (losses, lr,
    data time, ETA).
    """

    def __init__(self, window_size: int = 20):
        self.logger = logging.getLogger("detectron2.utils.events")
        self._window_size = window_size
        self._last_logged_iter = -1  # newest iteration already printed: the final write after training repeats none

    def write(self):
        storage = get_event_storage()
        latest = storage.latest()
        recent = {
            name: iteration
            for name, (_, iteration) in latest.items()
            if _on_console(name) and iteration > storage.iter - self._window_size
        }
        if not recent or max(recent.values()) <= self._last_logged_iter:
            return
        self._last_logged_iter = max(recent.values())
        fields = [
            f"{name}: {storage.history(name).median(storage.count_samples(name, self._window_size)):.4g}"
            if name.startswith("pseudo/")
            else f"{name}: {latest[name][0]:.4g}"
            for name in sorted(recent)
        ]
        self.logger.info(f" iter: {storage.iter}  " + "  ".join(fields))
