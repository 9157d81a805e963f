"""The semi-supervised trainer, its hooks and checkpointing."""
