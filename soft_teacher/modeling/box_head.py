"""Running the box branch of a ``StandardROIHeads`` on boxes we choose.

Soft Teacher scores boxes that are not the model's own proposals (jittered teacher detections,
student proposals moved into the teacher view); one call pools every box of the batch.
"""
from typing import Dict, List, Tuple

import torch

from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.structures import Boxes


def box_head_predictions(
    roi_heads: StandardROIHeads, features: Dict[str, torch.Tensor], boxes: List[Boxes]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Class logits ``(R, K + 1)`` and box deltas ``(R, 4K)`` (``(R, 4)`` class-agnostic) of ``boxes``.

    ``boxes`` holds per image ``(R_i, 4)`` boxes in the frame of the view that ``features`` come from;
    the rows follow their order, ``R = sum(R_i)``.
    """
    pooled = roi_heads.box_pooler([features[name] for name in roi_heads.box_in_features], boxes)
    return roi_heads.box_predictor(roi_heads.box_head(pooled))
