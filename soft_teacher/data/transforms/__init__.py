"""Strong augmentations as Detectron2 transforms, and view matrices."""
