"""Dataset registration: COCO partial splits, custom sets, the synthetic shapes set."""
from . import shapes  # noqa: F401  (registers shapes_train, shapes_val and their splits)
