"""A console writer for what Detectron2's CommonMetricPrinter leaves out in semi-supervised runs."""
import logging

from detectron2.utils.events import EventWriter, get_event_storage


def _on_console(name: str) -> bool:
    """``ema_momentum`` and ``pseudo/*``, less other thresholds' figures and the outer uncertainty percentiles."""
    if name == "ema_momentum":
        return True
    return name.startswith("pseudo/") and "_at_" not in name and name not in ("pseudo/uncertainty_p10",
                                                                              "pseudo/uncertainty_p90")


class PseudoLabelPrinter(EventWriter):
    """Logs one line per write with the pseudo-label statistics and the EMA momentum.

    ``pseudo/*`` scalars (pseudo boxes per image for the RPN, classification and regression
    losses, teacher score, jitter-uncertainty median, precision and recall against hidden
    annotations; the other thresholds' precision/recall and uncertainty percentiles only go to
    metrics.json and TensorBoard, see :mod:`soft_teacher.modeling.pseudo_label_quality`) are median-smoothed
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
