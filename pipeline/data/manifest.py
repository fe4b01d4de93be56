"""The data manifest: what the user's files hold, so Make follows contents, not names.

Make compares modification times of the files it is told about; listing every user image as
a prerequisite breaks on names Make cannot spell (spaces, ``:``, ``$``) and misses a file
replaced by an older copy. Instead, every Make run hashes the data set's files into one
manifest (``build/<name>/data/manifest.json``: per file its size, mtime, ctime, inode and
BLAKE2b hash; a file whose stat is unchanged keeps its hash, so a rerun reads nothing) and
writes one *digest file* per part of the data contract:

* ``train.digest``: ``labels.csv`` and every entry of the training ``images/`` folder,
* ``test.digest``: ``test.csv`` / ``sample_submission.csv`` when present and every entry
  of the test ``images/`` folder,
* ``truth.digest``: the test-truth file (``data.test_truth``), when the config names one.

A digest file is rewritten only when its content hash changes, so its mtime moves exactly
when the data does; the Makefile's rules name these files instead of the images. Replacing
or swapping two images' pixels under the same names re-runs what reads them; touching a
file without changing it re-runs nothing.

Standard library only: Make runs it at parse time with the system Python, before the
virtual environment may exist (``stages/resolve_config.py --data-dir``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from pipeline.artifacts import write_json_atomic, write_text_atomic

FORMAT = "fashion-data-manifest/1"
MANIFEST = "manifest.json"
#: The parts of the data contract, each a digest file ``<part>.digest`` beside the manifest.
PARTS = ("train", "test", "truth")
#: Files of the test folder that say what the test set is (besides its images).
TEST_LISTS = ("test.csv", "sample_submission.csv")


def _hash_file(path: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def file_state(path: str, known: dict | None = None) -> dict:
    """``{"stat": [...], "hash": ...}`` of one file (following symlinks). The hash of
    ``known`` is reused when the stat matches; a directory, a missing file or one that cannot
    be read (a symlink loop, no permission) gets a marker instead of a hash, so the stage
    that reads it reports the problem, and its digest still changes when it is fixed."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return {"stat": [], "hash": f"unreadable:{exc.errno}"}
    key = _stat_key(st)
    if os.path.isdir(path):
        return {"stat": key, "hash": "directory"}
    if known is not None and known.get("stat") == key:
        return known
    try:
        return {"stat": key, "hash": _hash_file(path)}
    except OSError as exc:
        return {"stat": key, "hash": f"unreadable:{exc.errno}"}


def part_files(train_dir: str, test_dir: str, test_truth: str) -> dict[str, list[str]]:
    """The files each part of the data contract consists of (absent optional files left out,
    a missing required file kept so its absence is part of the digest)."""

    def folder(d: str) -> list[str]:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            return []
        return [os.path.join(d, n) for n in names]

    test = [os.path.join(test_dir, n) for n in TEST_LISTS]
    return {
        "train": [
            os.path.join(train_dir, "labels.csv"),
            *folder(os.path.join(train_dir, "images")),
        ],
        "test": [p for p in test if os.path.lexists(p)] + folder(os.path.join(test_dir, "images")),
        "truth": [test_truth] if test_truth else [],
    }


def _digest(files: Iterable[str], states: dict[str, dict]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(json.dumps([os.path.basename(f), states[f]["hash"]]).encode() + b"\n")
    return h.hexdigest()


def update_manifest(
    out_dir: str | Path, train_dir: str, test_dir: str, test_truth: str = "", touch: bool = False
) -> dict[str, str]:
    """Hash the data set's files into ``out_dir/manifest.json`` and rewrite each part's
    ``<part>.digest`` whose content changed (every one with ``touch``: the data was just
    generated, so what reads it is stale by Make's rules anyway). Returns ``{part: digest}``.

    A part whose required file is missing (the demo's ``labels.csv`` before ``make
    demo-data``) keeps its digest file as it is, or has none: the Makefile's rule for the
    digest files makes them after the data is written.
    """
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST
    old: dict = {}
    if path.is_file():
        try:
            record = json.loads(path.read_text())
            old = record["files"] if record.get("format") == FORMAT else {}
        except (ValueError, KeyError, TypeError):
            old = {}
    parts = part_files(train_dir, test_dir, test_truth)
    states: dict[str, dict] = {}
    for files in parts.values():
        for f in files:
            key = os.path.abspath(f)
            states[f] = file_state(f, old.get(key))
    digests: dict[str, str] = {}
    for part in PARTS:
        files = parts[part]
        digest_file = out_dir / f"{part}.digest"
        required = {"train": files[:1], "test": [], "truth": files}[part]
        if not files or any(not os.path.exists(f) for f in required):
            continue  # the data is not there (yet): its stage will say so
        digests[part] = _digest(files, states)
        text = f"{digests[part]}  {len(files)} file(s)\n"
        if touch or not digest_file.is_file() or digest_file.read_text() != text:
            write_text_atomic(digest_file, text)
    record = {"format": FORMAT, "files": {os.path.abspath(f): s for f, s in states.items()}}
    if not path.is_file() or json.loads(path.read_text() or "{}") != record:
        write_json_atomic(path, record)
    return digests
