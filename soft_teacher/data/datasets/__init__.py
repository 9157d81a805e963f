"""Dataset registration: COCO partial splits, custom sets, the synthetic shapes set."""
