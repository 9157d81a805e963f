"""Where the datasets live, and the one rule by which this package registers them."""
import logging
import os
from typing import Callable, Dict, Hashable, List, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

__all__ = ["dataset_root", "register_dataset"]

logger = logging.getLogger(__name__)

# name -> (owner, source) of every dataset this package registered.
_REGISTERED: Dict[str, Tuple[str, Hashable]] = {}


def dataset_root() -> str:
    """Detectron2's dataset root, read now: ``$DETECTRON2_DATASETS``, else ``./datasets``."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def register_dataset(name: str, loader: Callable[[], List[dict]], owner: str, source: Hashable,
                     builtin: bool = False, **metadata) -> None:
    """Register ``name`` lazily (``loader`` runs when the set is loaded) with ``metadata``.

    A name belongs to the ``owner`` that registered it first (e.g. "DATASETS.CUSTOM_COCO").
    The owner registering it again from the same ``source`` (what the set is made of, e.g.
    its json file and image root) does nothing, so metadata that loading added (a COCO
    json's ``thing_classes``) survives; from another source, it replaces the registration.
    Any other registration of a taken name, including of Detectron2's builtin sets, raises
    ``ValueError``, except for the package's built-in sets (``builtin=True``: the shapes set,
    the COCO partial splits, ``coco_2017_unlabel``), which replace it with a warning: other
    semi-supervised codebases register some of these names too, and importing both must work.
    """
    if _REGISTERED.get(name) == (owner, source):
        return
    if name in DatasetCatalog.list():
        previous = _REGISTERED.get(name, ("Detectron2 or other code",))[0]
        if previous != owner:
            if not builtin:
                raise ValueError(f"{owner}: dataset name '{name}' is already registered by {previous}; "
                                 "choose another name.")
            logger.warning("Dataset '%s' was already registered by %s; soft_teacher's registration (%s) replaced "
                           "it.", name, previous, owner)
        DatasetCatalog.remove(name)
        MetadataCatalog.pop(name, None)  # other code may have registered a set without metadata
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**metadata)
    _REGISTERED[name] = (owner, source)
