"""pipeline.data.manifest: digest files per part of the data contract, by contents."""

from __future__ import annotations

import json

from pipeline.data.manifest import MANIFEST, update_manifest


def _data(root):
    for split in ("train", "test"):
        (root / split / "images").mkdir(parents=True)
    (root / "train" / "labels.csv").write_text("image,a\nx.png,1\n")
    (root / "train" / "images" / "x.png").write_bytes(b"x")
    (root / "test" / "images" / "t.png").write_bytes(b"t")
    return [str(root / "out"), str(root / "train"), str(root / "test")]


def test_a_symlink_loop_or_a_directory_is_recorded_not_fatal(tmp_path):
    args = _data(tmp_path)
    first = update_manifest(*args)
    assert set(first) == {"train", "test"}  # no truth file named: no truth digest
    loop = tmp_path / "test" / "images" / "loop.png"
    loop.symlink_to(loop)
    (tmp_path / "test" / "images" / "dir.png").mkdir()
    second = update_manifest(*args)
    assert second["test"] != first["test"] and second["train"] == first["train"]
    files = json.loads((tmp_path / "out" / MANIFEST).read_text())["files"]
    assert files[str(loop)]["hash"].startswith("unreadable:")
    assert files[str(tmp_path / "test" / "images" / "dir.png")]["hash"] == "directory"
    loop.unlink()
    (tmp_path / "test" / "images" / "dir.png").rmdir()
    assert update_manifest(*args) == first


def test_missing_data_keeps_the_digest_file_and_touch_rewrites(tmp_path):
    args = _data(tmp_path)
    update_manifest(*args)
    digest = tmp_path / "out" / "train.digest"
    text, mtime = digest.read_text(), digest.stat().st_mtime_ns
    (tmp_path / "train" / "labels.csv").unlink()
    assert "train" not in update_manifest(*args)
    assert digest.read_text() == text  # the stage that reads the data says what is missing
    (tmp_path / "train" / "labels.csv").write_text("image,a\nx.png,1\n")
    update_manifest(*args)
    assert digest.stat().st_mtime_ns == mtime
    update_manifest(*args, touch=True)
    assert digest.stat().st_mtime_ns != mtime and digest.read_text() == text
