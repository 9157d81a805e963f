"""Running the box branch of a ``StandardROIHeads`` on boxes we choose.

Soft Teacher scores boxes that are not the model's own proposals: jittered teacher
detections, student proposals mapped into the teacher view, sampled student proposals.
One call pools every box of the batch at once.
"""
from typing import Dict, List, Tuple

import torch

from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.structures import Boxes


def box_head_predictions(
    roi_heads: StandardROIHeads, features: Dict[str, torch.Tensor], boxes: List[Boxes]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pool, run the box head and the box predictor on ``boxes``, in a single call for the batch.

    Args:
        roi_heads: the detector's ROI heads.
        features: the backbone features of the images the boxes live in.
        boxes: per image, ``Boxes`` of shape ``(R_i, 4)`` in that image's (view) frame.

    Returns:
        ``(R, K + 1)`` class logits and ``(R, 4 K)`` (or ``(R, 4)`` class-agnostic) box deltas,
        ``R = sum(R_i)``, rows in the order of ``boxes``.
    """
    pooled = roi_heads.box_pooler([features[name] for name in roi_heads.box_in_features], boxes)
    return roi_heads.box_predictor(roi_heads.box_head(pooled))
