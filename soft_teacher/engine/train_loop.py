"""Detectron2's SimpleTrainer and AMPTrainer, stopping on a non-finite loss with its name.

One step is theirs unchanged: ``loss_dict = model(data)`` on the loader's item (for a Soft
Teacher run, ``{"labeled": [...], "unlabeled": [...]}``), backward on the sum, one optimizer
step (through the AMP grad scaler when enabled). Detectron2 reports a NaN/Inf loss by the
total only, on the main process; these check each loss of every rank before logging it.
"""
from typing import Mapping, Optional

import torch
from detectron2.engine import AMPTrainer, SimpleTrainer
from detectron2.utils import comm


def check_losses_finite(loss_dict: Mapping[str, torch.Tensor], iteration: int) -> None:
    """Raise FloatingPointError naming ``iteration`` and every loss that is NaN or infinite.

    With several processes, every rank raises when any rank has a non-finite loss (the message
    names each loss with its rank), so that no rank is left waiting for the others.
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


class _FiniteLossCheck:
    def _write_metrics(self, loss_dict, data_time: float, prefix: str = "", iter: Optional[int] = None) -> None:
        check_losses_finite(loss_dict, self.iter if iter is None else iter)
        super()._write_metrics(loss_dict, data_time, prefix=prefix, iter=iter)


class FiniteLossSimpleTrainer(_FiniteLossCheck, SimpleTrainer):
    """SimpleTrainer that raises FloatingPointError naming the iteration and each non-finite loss."""


class FiniteLossAMPTrainer(_FiniteLossCheck, AMPTrainer):
    """AMPTrainer that raises FloatingPointError naming the iteration and each non-finite loss."""
