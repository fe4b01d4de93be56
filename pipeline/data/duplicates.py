"""Exact and near copies among the images, and the up-front decode of every image that
finds them (:func:`validate_images`, run by ``make folds``, which groups copies into one
fold): content hashes, a 64-bit DCT perceptual hash plus a 4x4 colour thumbnail per image,
near pairs, transitive groups and the report ``make folds`` writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.contract import DataSet, file_digests
from pipeline.runtime.images import check_complete, load_image

#: Largest mean |difference| (0..255) of two 4x4 RGB thumbnails for a near copy: pHash
#: is colour-blind, and a recoloured garment (other colour labels) is not a copy.
NEAR_COLOUR_TOLERANCE = 16.0


@dataclass(frozen=True)
class Fingerprints:
    """Per image: a 64-bit DCT perceptual hash and a 4x4 RGB thumbnail (48 values), the same
    of the mirrored image (training flips images and prediction averages both orientations,
    so a mirrored copy is as much a copy), and a hash of the decoded pixels and of their
    mirror (the same picture in another file format or mirrored: an exact copy)."""

    phash: np.ndarray
    thumb: np.ndarray
    phash_mirror: np.ndarray | None = None
    thumb_mirror: np.ndarray | None = None
    pixels: tuple[str, ...] = ()
    pixels_mirror: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.phash)

    def mirrored(self) -> Fingerprints:
        """The fingerprints of the mirrored images."""
        if self.phash_mirror is None:
            raise ValueError("these fingerprints were made without their mirror images")
        return Fingerprints(self.phash_mirror, self.thumb_mirror)


def pixel_digest(img: np.ndarray) -> str:
    """BLAKE2b of decoded pixels (and their shape): equal for one picture in any lossless
    encoding."""
    import hashlib

    h = hashlib.blake2b(np.ascontiguousarray(img).tobytes(), digest_size=16)
    h.update(str(img.shape).encode())
    return h.hexdigest()


def fingerprint(img: np.ndarray) -> tuple[np.uint64, np.ndarray]:
    """(pHash, thumbnail) of a decoded RGB image. pHash: grey 32x32, the 8x8 lowest DCT
    frequencies above their median; re-encodes, resizes and mild edits stay within a few
    bits."""
    import cv2

    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8]
    bits = np.packbits((low > np.median(low)).ravel())
    thumb = cv2.resize(img, (4, 4), interpolation=cv2.INTER_AREA).reshape(-1)
    return np.uint64(int.from_bytes(bits.tobytes(), "big")), thumb


def validate_images(
    paths: list[Path], csv: Path | None = None, desc: str = "check images"
) -> Fingerprints:
    """Decode every image once, up front, so a bad file stops the run before training;
    return each image's :class:`Fingerprints` for the duplicate search.

    Raises ValueError naming the file (and its row in ``csv``; None: the images are a
    folder's listing) for a zero-byte, truncated (even where OpenCV shows a partial
    picture), oversized or non-image file.
    """
    import cv2
    from tqdm import tqdm

    hashes = np.zeros((2, len(paths)), dtype=np.uint64)
    thumbs = np.zeros((2, len(paths), 48), dtype=np.uint8)
    pixels: list[list[str]] = [[], []]
    for r, path in enumerate(tqdm(paths, desc=desc, unit="img", leave=False, mininterval=1)):
        where = f"{csv} row {r + 2}: " if csv is not None else ""
        try:
            if Path(path).stat().st_size == 0:
                raise ValueError("empty")
            img = load_image(path)
            check_complete(str(path))
        except (ValueError, OSError, cv2.error) as exc:
            detail = str(exc)
            if not detail.startswith(str(path)):  # the generic case keeps its old wording
                detail = (
                    f"{path} is empty, truncated or not an image; replace the file or "
                    "remove its row"
                )
            if csv is None:  # a folder listing (no test.csv): there is no row to remove
                detail = detail.replace("remove its row", "move it out of the folder")
            raise ValueError(f"{where}{detail}") from exc
        for side, view in enumerate((img, img[:, ::-1])):
            hashes[side, r], thumbs[side, r] = fingerprint(np.ascontiguousarray(view))
            pixels[side].append(pixel_digest(view))
    return Fingerprints(hashes[0], thumbs[0], hashes[1], thumbs[1], *map(tuple, pixels))


def near_pairs(
    a: Fingerprints, b: Fingerprints | None = None, max_distance: int = 4
) -> list[tuple[int, int, int]]:
    """Index pairs (i, j, pHash distance) of near copies: within ``max_distance`` bits and
    with thumbnails within :data:`NEAR_COLOUR_TOLERANCE`; inside ``a`` (i < j) when ``b``
    is None, else between ``a`` and ``b``. Blocked, so 3,000 images take milliseconds."""
    same = b is None
    b = a if same else b
    ha, hb = np.asarray(a.phash, dtype=np.uint64), np.asarray(b.phash, dtype=np.uint64)
    out = []
    for s in range(0, len(ha), 512):
        d = _popcount64(ha[s : s + 512, None] ^ hb[None, :])
        i, j = np.nonzero(d <= max_distance)
        i = i + s
        keep = i < j if same else np.ones(len(i), bool)
        for x, y in zip(i[keep], j[keep], strict=True):
            colour = np.abs(a.thumb[x].astype(np.int16) - b.thumb[y].astype(np.int16)).mean()
            if colour <= NEAR_COLOUR_TOLERANCE:
                out.append((int(x), int(y), int(d[x - s, y])))
    return out


def _popcount64(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x)
    table = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)
    return table[np.ascontiguousarray(x).view(np.uint8)].reshape(*x.shape, 8).sum(-1)


def duplicate_groups(n: int, pairs) -> np.ndarray:
    """Group id per row (the smallest row index of its group) from duplicate ``pairs``
    (i, j, ...), joined transitively (union-find)."""
    parent = np.arange(n)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, *_ in pairs:
        ri, rj = root(int(i)), root(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([root(x) for x in range(n)], dtype=np.int64)


def exact_pairs(
    a_keys: Sequence[Sequence[str]], b_keys: Sequence[Sequence[str]] | None = None
) -> list[tuple[int, int, int]]:
    """Index pairs (i, j, 0) of rows sharing any key (file bytes, pixels, mirrored pixels):
    inside ``a`` (i < j) when ``b_keys`` is None, else between ``a`` and ``b``."""
    first: dict[str, int] = {}
    pairs: set[tuple[int, int, int]] = set()
    for i, keys in enumerate(a_keys):
        for key in keys:
            if b_keys is None and key in first and first[key] != i:
                pairs.add((first[key], i, 0))
            first.setdefault(key, i)
    for j, keys in enumerate(b_keys or []):
        for key in keys:
            if key in first:
                pairs.add((first[key], j, 0))
    return sorted(pairs)


def _exact_keys(paths: Sequence[str | Path], prints: Fingerprints) -> list[tuple[str, ...]]:
    """Per image: its file's content hash and its pixels' hashes in both orientations."""
    keys = [(f"file:{d}",) for d in file_digests(paths)]
    if prints.pixels:
        keys = [
            (*k, f"px:{p}", f"px:{m}")
            for k, p, m in zip(keys, prints.pixels, prints.pixels_mirror, strict=True)
        ]
    return keys


def mirrored_near_pairs(
    a: Fingerprints, b: Fingerprints | None = None, max_distance: int = 4
) -> list[tuple[int, int, int]]:
    """:func:`near_pairs` between ``a`` and the mirror images of ``b`` (of ``a`` itself,
    i < j, when ``b`` is None)."""
    if a.phash_mirror is None or (b is not None and b.phash_mirror is None):
        return []
    pairs = near_pairs(a, (a if b is None else b).mirrored(), max_distance)
    return [(i, j, d) for i, j, d in pairs if b is not None or i < j]


def copy_groups(
    paths: Sequence[str | Path], prints: Fingerprints, max_distance: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """(exact-copy group, exact-or-near-copy group) per image, as :func:`duplicate_groups`
    ids: same bytes or same pixels (mirrored too), or :func:`near_pairs` within
    ``max_distance`` bits, mirrored too (-1: exact only)."""
    pairs = exact_pairs(_exact_keys(paths, prints))
    exact = duplicate_groups(len(paths), pairs)
    if max_distance >= 0:
        pairs += near_pairs(prints, max_distance=max_distance)
        pairs += mirrored_near_pairs(prints, max_distance=max_distance)
    return exact, duplicate_groups(len(paths), pairs)


def conflicting_labels(
    ids: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    groups: list[list[int]],
    exact_groups: np.ndarray,
) -> list[dict]:
    """The copy groups whose rows disagree on a known label (one photo marked both 1 and 0):
    per group its ids, the labels that disagree and whether all its rows are exact copies.
    Such a group stays in one fold, but its labels teach the model both answers."""
    out = []
    for rows in groups:
        block = y[rows]
        differ = (np.nanmax(block, axis=0, initial=0) == 1) & (
            np.nanmin(block, axis=0, initial=1) == 0
        )
        if differ.any():
            out.append(
                {
                    "ids": [str(ids[r]) for r in rows],
                    "labels": [lab for lab, d in zip(labels, differ, strict=True) if d],
                    "exact": bool(len(set(exact_groups[rows].tolist())) == 1),
                }
            )
    return out


def train_copy_groups(
    ds: DataSet, train_prints: Fingerprints, max_distance: int = 4
) -> tuple[np.ndarray, dict]:
    """Group the training rows that are copies of one photo (:func:`copy_groups`): (group
    id per row, the data report's ``train_groups`` summary + ``groups`` lists)."""
    ids = ds.train.ids
    exact_groups, groups = copy_groups(ds.train.paths(), train_prints, max_distance)
    members: dict[int, list[int]] = {}
    for r, g in enumerate(groups):
        members.setdefault(int(g), []).append(r)
    multi = [rows for rows in members.values() if len(rows) > 1]
    conflicts = conflicting_labels(ids, ds.train.y, ds.train.labels, multi, exact_groups)
    summary = {
        "exact": int(sum(np.bincount(exact_groups) > 1)),
        "all": len(multi),
        "rows_in_groups": int(sum(len(rows) for rows in multi)),
        "largest": max((len(rows) for rows in multi), default=1),
        "with_conflicting_labels": len(conflicts),
        "groups": [[str(ids[r]) for r in rows] for rows in multi],
        "conflicting_labels": conflicts,
    }
    return groups, summary


def duplicate_report(
    ds: DataSet,
    train_prints: Fingerprints,
    test_prints: Fingerprints,
    max_distance: int = 4,
) -> tuple[np.ndarray, dict]:
    """Group the training rows that are copies of one photo, and find test images that
    copy a training image.

    Exact copies share their bytes (content hash) or their decoded pixels, either way round;
    near copies are within ``max_distance`` bits of pHash with similar colours
    (:func:`near_pairs`, mirrored too; -1: exact copies only). Groups join transitively.
    Byte-identical train/test copies never reach here (:func:`check_disjoint` refuses them);
    the others (a re-encoded, mirrored or near copy) are reported, not refused: a user's
    test set is theirs.

    Returns:
        (group id per training row, the JSON-ready data report).
    """
    ids = ds.train.ids
    n = len(ids)
    groups, summary = train_copy_groups(ds, train_prints, max_distance)
    multi_groups = summary.pop("groups")
    conflicts = summary.pop("conflicting_labels")
    test_paths = ds.test_paths()
    train_keys = [k[1:] for k in _exact_keys(ds.train.paths(), train_prints)]  # pixels only
    test_keys = [k[1:] for k in _exact_keys(test_paths, test_prints)]
    found: dict[tuple[int, int], dict] = {}
    for i, j, d in exact_pairs(train_keys, test_keys):
        same = train_prints.pixels and train_prints.pixels[i] == test_prints.pixels[j]
        found[(i, j)] = {"distance": d, "mirrored": not same, "exact": True}
    if max_distance >= 0:
        for mirrored, pairs in (
            (False, near_pairs(train_prints, test_prints, max_distance)),
            (True, mirrored_near_pairs(train_prints, test_prints, max_distance)),
        ):
            for i, j, d in pairs:
                found.setdefault((i, j), {"distance": d, "mirrored": mirrored, "exact": False})
    cross = sorted(found.items())
    report = {
        "train_images": n,
        "test_images": len(ds.test_ids),
        "near_duplicate_max_distance": max_distance,
        "method": "exact = same bytes (BLAKE2b) or same decoded pixels, mirrored too; "
        "near = 64-bit DCT pHash of the image or its mirror within "
        f"{max_distance} bits and 4x4 RGB thumbnails within {NEAR_COLOUR_TOLERANCE:g} "
        "(mean |difference|); groups join transitively and stay in one fold",
        "train_groups": summary,
        "groups": multi_groups,
        "conflicting_labels": conflicts,
        "train_test_near_duplicates": {
            "count": len(cross),
            "pairs": [
                {"train": str(ids[i]), "test": str(ds.test_ids[j]), **pair}
                for (i, j), pair in cross
            ],
        },
    }
    return groups, report
