"""check_image_files: the up-front check that every labeled image file exists."""
import os
import re

import pytest

from soft_teacher.data.datasets.validation import check_image_files


def _touch_images(folder, count):
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"{i:04d}.png") for i in range(count)]
    for path in paths:
        open(path, "wb").close()
    return paths


def test_urls_are_not_reported_missing():
    """The mappers read them through PathManager; PathManager.isfile cannot check http(s) paths."""
    dicts = [{"file_name": "https://example.com/images/0001.jpg"}, {"file_name": "http://example.com/0002.jpg"}]
    check_image_files(dicts, ["url_set"])


def test_a_missing_file_among_many_in_one_folder_is_reported(tmp_path):
    paths = _touch_images(str(tmp_path / "images"), 30)
    gone = paths[17]
    os.remove(gone)
    dicts = [{"file_name": path} for path in paths]
    with pytest.raises(FileNotFoundError, match=rf"^1 of the 30 images of many_set do not exist:\n    "
                                                rf"{re.escape(gone)}\nImage roots: "):
        check_image_files(dicts, ["many_set"])


def test_each_folder_is_listed_once_however_many_images_it_holds(tmp_path, monkeypatch):
    """One directory read per folder instead of one stat per image: cheap on network file systems."""
    paths = _touch_images(str(tmp_path / "a"), 20) + _touch_images(str(tmp_path / "b"), 20)
    listed = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda folder: listed.append(folder) or scandir(folder))
    check_image_files([{"file_name": path} for path in paths], ["two_folder_set"])
    assert listed == [str(tmp_path / "a"), str(tmp_path / "b")]
