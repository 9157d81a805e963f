"""Augmentations applied in a random order per image (the reference's ``ShuffledSequential``)."""
from typing import Sequence

import numpy as np
from detectron2.data import transforms as T

__all__ = ["RandomOrder"]


class RandomOrder(T.Augmentation):
    """Apply all of ``augs``, in an order drawn uniformly at random per image.

    The student view uses it for its photometric op and its geometric op, so each image
    gets the colour change before or after the warp with probability 1/2 each. The returned
    ``TransformList`` holds the transforms in the order they were applied, so its view matrix
    (:func:`~soft_teacher.data.transforms.transform_matrix`) is right for either order.
    """

    def __init__(self, augs: Sequence[T.Augmentation]):
        super().__init__()
        augs = list(augs)
        not_augmentations = [type(a).__name__ for a in augs if not isinstance(a, T.Augmentation)]
        if not_augmentations:
            raise TypeError(f"RandomOrder takes Augmentations, got {not_augmentations}")
        self.augs = augs

    def __call__(self, aug_input) -> T.TransformList:
        return T.TransformList([self.augs[i](aug_input) for i in np.random.permutation(len(self.augs))])

    def __repr__(self):
        return f"RandomOrder[{', '.join(str(a) for a in self.augs)}]"

    __str__ = __repr__
