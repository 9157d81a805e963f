"""Views, mappers, semi-supervised loaders and datasets."""
