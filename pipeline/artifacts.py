"""Every file format passed between stages, and the one atomic writer they all use.

STYLE "one format, one module": a file one stage writes and another reads has exactly one
writer and one reader, next to each other here, so the two cannot drift apart:

- the **fold file** (``build/<config>/preds/<member>.fold<k>.npz``): one member's
  per-epoch out-of-fold and test predictions for one CNN fold
  (:func:`save_fold_predictions` / :func:`load_fold_predictions`);
- the **stacked file** (``build/<config>/stack/stacked.npz``): the second level's OOF and
  per-fold test probabilities plus every candidate combiner's
  (:func:`save_stacked` / :func:`load_stacked`);
- the **embedding file** (``build/<config>/embed/<name>.npz``): a frozen backbone's
  embeddings of every train and test image (:func:`save_embeddings` /
  :func:`load_embeddings`);
- the **thresholds file** (``build/<config>/thresholds.json``): the ensemble's per-label
  thresholds and their OOF scores (:func:`save_thresholds` / :func:`load_thresholds`);
- the **selection file** (``build/<config>/stack/selection.json``): the second level's
  per-label column selection and its record (:func:`save_selection` /
  :func:`load_selection`);
- the **metrics file** (``build/<config>/report/metrics.json``): the report's scores of
  the run, which `make serve` and the benchmarks read (:func:`save_metrics` /
  :func:`load_metrics`);
- the **predictor manifest** (``build/<config>/stack/predict.json``): what `make predict`
  and `make serve` need that only `make stack` knows; its content is built by
  :func:`pipeline.ensemble.predict_manifest.build_manifest` (:func:`save_predict_manifest` /
  :func:`load_predict_manifest`);
- the **data report** (``build/<config>/data_report.json``): `make folds`' copy groups and
  train/test near copies, which the report tabulates (:func:`save_data_report` /
  :func:`load_data_report`);
- the **similarity metrics** (``build/<config>/similar/metrics.json``): `make similar`'s
  precision@k, which the report carries (:func:`save_similarity_metrics` /
  :func:`load_similarity_metrics`);
- the **submission** (``submissions/<config>-<hash>.csv``): the voted 0/1 labels per test
  image, wide or in a sample submission's layout (:mod:`pipeline.ensemble.submit` builds and
  checks the frame), which the report scores (:func:`save_submission` /
  :func:`load_submission_votes`);
- the **external exchange file** (an ``[[external]]`` member's ``path``, ``.csv`` or
  ``.npz``): a teammate's OOF + test predictions made on our folds file
  (:func:`save_external_predictions` / :func:`load_external_predictions`; teammates
  without this package write it with the README's pandas example).

Writes are atomic: :func:`write_atomic` writes to a temp name beside the target (same
directory, so ``os.replace`` is atomic) and renames it into place, removing the temp file
on any failure; :func:`atomic_dir` does the same for a whole folder. A killed stage leaves
the old file or the new one, never half of one (Make would take a half file as done).

numpy is imported inside the functions that need it: the writers are stdlib-only, so
``stages/resolve_config.py``, which Make runs under the system ``python3`` before the
virtual environment exists, writes through them too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# --- the atomic writer ----------------------------------------------------------------


def atomic_path(path: str | Path, suffix: str | None = None) -> Path:
    """A temp name beside ``path`` (same directory, so ``os.replace`` is atomic).

    It ends in ``suffix`` (default: ``path``'s own), for writers that pick the format from
    the name (Keras wants ``*.weights.h5``, OpenCV ``*.png``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    end = path.suffix if suffix is None else suffix
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{end}")


def write_atomic(path: str | Path, write: Callable[[Path], Any], suffix: str | None = None) -> None:
    """Call ``write(tmp)`` then rename onto ``path``; on any failure (a full disk, a kill
    signal turned exception) remove the temp file, so only the old file or the new one exists."""
    path = Path(path)
    tmp = atomic_path(path, suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Yield a fresh temp folder beside ``out``; when the block succeeds it replaces
    ``out`` whole (the old folder is renamed aside, then removed). On any error the temp
    folder is removed and ``out`` is left as it was: never a half-written folder."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    old = out.with_name(f"{out.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed run that had our pid
    tmp.mkdir()
    try:
        yield tmp
        if out.exists() or out.is_symlink():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)  # does not follow symlinks inside


def save_npz_atomic(path: str | Path, **arrays) -> None:
    """``np.savez`` to a temp file then rename; arrays must not need pickle."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    write_atomic(path, write)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_json_atomic(path: str | Path, payload) -> None:
    """Indented JSON (with a final newline), written to a temp file and renamed."""
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def write_csv_atomic(df: pd.DataFrame, path: str | Path) -> None:
    write_atomic(path, lambda tmp: df.to_csv(tmp, index=False, lineterminator="\n"))


def _read_npz(path: Path, required: Sequence[str], fix: str) -> dict[str, np.ndarray]:
    """Every array of ``path`` (no pickles), refusing a missing file or missing arrays."""
    import numpy as np

    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {fix}")
    with np.load(path, allow_pickle=False) as npz:
        missing = [key for key in required if key not in npz.files]
        if missing:
            raise ValueError(f"{path} lacks array(s) {missing}; {fix}")
        return {key: npz[key] for key in npz.files}


def _read_json(path: Path, required: Sequence[str], fix: str) -> dict[str, Any]:
    """A JSON object file's content, refusing a missing file, bad JSON or missing keys."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {fix}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); {fix}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, not a JSON object; {fix}")
    missing = [key for key in required if key not in data]
    if missing:
        raise ValueError(f"{path} lacks {missing}; {fix}")
    return data


# --- the fold file ----------------------------------------------------------------------

#: Arrays every fold file holds (``loss`` too, NaN for members without one).
FOLD_FILE_KEYS = ("labels", "val_ids", "test_ids", "oof", "test", "epochs")


def save_fold_predictions(
    path: str | Path,
    labels: Sequence[str],
    val_ids,
    test_ids,
    epochs,
    oof,
    test,
    loss,
) -> None:
    """Write one member's predictions for one CNN fold (atomically).

    Arrays: ``labels`` (L,), ``val_ids`` (n_val,) and ``test_ids`` (n_test,) str,
    ``epochs`` (E,) int, ``oof`` (E, n_val, L) and ``test`` (E, n_test, L) float32 (the
    fold model's predictions after each epoch), ``loss`` (E,) float32 training loss.
    """
    import numpy as np

    save_npz_atomic(
        path,
        labels=np.asarray(labels),
        val_ids=np.asarray(val_ids).astype(str),
        test_ids=np.asarray(test_ids).astype(str),
        epochs=np.asarray(epochs, dtype=np.int64),
        oof=np.asarray(oof, dtype=np.float32),
        test=np.asarray(test, dtype=np.float32),
        loss=np.asarray(loss, dtype=np.float32),
    )


def save_single_epoch_predictions(out_path, labels, val_ids, test_ids, oof, test) -> None:
    """A fold file for a one-"epoch" member (Two-Flow, frozen heads, the baseline):
    ``epochs`` = [1], ``oof`` (n_val, L) and ``test`` (n_test, L) get the epoch axis,
    ``loss`` = [nan]."""
    import numpy as np

    save_fold_predictions(
        out_path,
        labels,
        val_ids,
        test_ids,
        epochs=[1],
        oof=np.asarray(oof)[None],
        test=np.asarray(test)[None],
        loss=[np.nan],
    )


def load_fold_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """Read a fold file written by :func:`save_fold_predictions`, refusing a bad one
    (missing arrays, shapes that disagree, NaN/inf predictions, a repeated epoch).

    Returns the :data:`FOLD_FILE_KEYS` arrays, and ``loss`` when the file has it.
    """
    import numpy as np

    path = Path(path)
    npz = _read_npz(path, FOLD_FILE_KEYS, "re-run its `make train-cnn` job")
    data = {key: npz[key] for key in (*FOLD_FILE_KEYS, "loss") if key in npz}
    n_epochs, n_val, n_test = len(data["epochs"]), len(data["val_ids"]), len(data["test_ids"])
    n_labels = len(data["labels"])
    for key, shape in (
        ("oof", (n_epochs, n_val, n_labels)),
        ("test", (n_epochs, n_test, n_labels)),
    ):
        if data[key].shape != shape:
            raise ValueError(
                f"{path}: {key} has shape {data[key].shape}, expected (epochs, ids, labels) = {shape}"
            )
        if not np.isfinite(data[key]).all():
            raise ValueError(f"{path}: {key} holds NaN/inf predictions; re-run its training job")
    if len(np.unique(data["epochs"])) != n_epochs:
        raise ValueError(f"{path}: epochs {data['epochs'].tolist()} repeat an epoch")
    return data


# --- the stacked file -------------------------------------------------------------------

#: Arrays every stacked file holds; the candidate arrays come with a chosen second level.
STACKED_KEYS = ("labels", "train_ids", "test_ids", "y", "oof", "test")


def save_stacked(
    path: str | Path,
    labels: Sequence[str],
    train_ids,
    test_ids,
    y,
    oof,
    test,
    combiners: Sequence[str],
    candidates_oof,
    candidates_test,
    choice_combiner,
    choice_rule: Sequence[str],
) -> None:
    """Write the second level's output (atomically).

    Arrays: ``labels`` (L,), ``train_ids`` (n,), ``test_ids`` (m,), ``y`` (n, L) the
    training labels (NaN = unknown), ``oof`` (n, L) the chosen combiners' OOF (NaN where
    ``y`` is), ``test`` (K, m, L) float32 per CNN fold, ``combiners`` (C,) the candidate
    names, ``candidates_oof`` (C, n, L) / ``candidates_test`` (C, K, m, L) every
    candidate's, ``choice_combiner`` (L,) index into ``combiners`` and ``choice_rule`` (L,)
    the threshold rule per label.
    """
    import numpy as np

    save_npz_atomic(
        path,
        labels=np.asarray(labels),
        train_ids=np.asarray(train_ids).astype(str),
        test_ids=np.asarray(test_ids).astype(str),
        y=y,
        oof=oof,
        test=np.asarray(test).astype(np.float32),
        combiners=np.asarray(combiners),
        candidates_oof=candidates_oof,
        candidates_test=candidates_test,
        choice_combiner=choice_combiner,
        choice_rule=np.asarray(choice_rule),
    )


def load_stacked(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of a stacked file written by :func:`save_stacked` (``test_ids`` as str),
    refusing a missing file or one that lacks the :data:`STACKED_KEYS`."""
    data = _read_npz(Path(path), STACKED_KEYS, "re-run `make stack`")
    data["test_ids"] = data["test_ids"].astype(str)
    return data


# --- the embedding file -----------------------------------------------------------------

_EMBED_KEYS = ("train_ids", "test_ids", "train", "test", "backbone", "image_size", "source")
_EMBED_FIX = "re-run `make embed` (a frozen backbone's) or `make embed-cnn` (a CNN fold's)"


def save_embeddings(
    path,
    train_ids,
    test_ids,
    train,
    test,
    backbone: str,
    image_size: int,
    source: str = "",
) -> None:
    """Write an embedding file (atomically): ids, (n, D) / (m, D) float32 embeddings, and
    the backbone and image size that made them; ``source``: the checkpoint they came from
    (a CNN fold's; a query embedded later must go through the same model), else ``""``."""
    import numpy as np

    save_npz_atomic(
        path,
        train_ids=np.asarray(train_ids).astype(str),
        test_ids=np.asarray(test_ids).astype(str),
        train=np.asarray(train, dtype=np.float32),
        test=np.asarray(test, dtype=np.float32),
        backbone=np.asarray(backbone),
        image_size=np.asarray(image_size),
        source=np.asarray(source),
    )


def load_embeddings(path, train_ids=None, test_ids=None) -> dict[str, Any]:
    """Read an embedding file written by :func:`save_embeddings`, refusing a bad one, and
    one whose ids differ from ``train_ids`` / ``test_ids`` (the data set's) when given.

    Returns the arrays, with ``backbone`` and ``source`` as str and ``image_size`` as int.
    """
    import numpy as np

    path = Path(path)
    npz = _read_npz(path, _EMBED_KEYS, _EMBED_FIX)
    data: dict[str, Any] = {k: npz[k] for k in _EMBED_KEYS}
    for part, expected in (("train", train_ids), ("test", test_ids)):
        ids = data[f"{part}_ids"] = data[f"{part}_ids"].astype(str)
        if data[part].shape[0] != len(ids) or not np.isfinite(data[part]).all():
            raise ValueError(f"{path}: {part} embeddings do not match their ids or hold NaN")
        if expected is not None and not np.array_equal(ids, np.asarray(expected).astype(str)):
            raise ValueError(f"{path}: its {part} ids differ from the data set's; {_EMBED_FIX}")
    data["backbone"], data["source"] = str(data["backbone"]), str(data["source"])
    data["image_size"] = int(data["image_size"])
    return data


# --- the thresholds file ----------------------------------------------------------------


def save_thresholds(
    path: str | Path,
    labels: Sequence[str],
    thresholds,
    oof_fbeta_per_label,
    oof_fbeta: float,
    rules: str,
    config: dict,
) -> None:
    """Write the ensemble's thresholds (atomically): one per label, in ``labels`` order,
    with the OOF F-beta they reach per label and overall, how they were chosen (``rules``)
    and the ``[thresholds]`` settings used."""
    write_json_atomic(
        path,
        {
            "labels": list(labels),
            "thresholds": [float(v) for v in thresholds],
            "oof_fbeta_per_label": [float(v) for v in oof_fbeta_per_label],
            "oof_fbeta": float(oof_fbeta),
            "rules": rules,
            "config": config,
        },
    )


def load_thresholds(
    path: str | Path, labels: Sequence[str] | None = None, against: str | Path = ""
) -> dict[str, Any]:
    """Read a thresholds file written by :func:`save_thresholds` (``thresholds`` as a
    float64 array), refusing a missing or malformed one, and with ``labels`` one whose
    labels differ from them (``against`` names where ``labels`` came from)."""
    import numpy as np

    path = Path(path)
    fix = "re-run `make thresholds CONFIG=...`"
    data = _read_json(path, ("labels", "thresholds"), fix)
    data["thresholds"] = np.asarray(data["thresholds"], dtype=np.float64)
    if data["thresholds"].shape != (len(data["labels"]),):
        raise ValueError(
            f"{path}: {len(data['thresholds'])} thresholds for {len(data['labels'])} labels; {fix}"
        )
    if labels is not None and list(data["labels"]) != [str(x) for x in labels]:
        raise ValueError(f"{path}: its labels differ from those of {against or 'the run'}; {fix}")
    return data


# --- the selection file ----------------------------------------------------------------

#: The selection file's name, in the stack stage's folder (``stack/selection.json``).
SELECTION_FILE = "selection.json"


def save_selection(path: str | Path, selection: dict, second_level: dict) -> None:
    """Write the second level's column selection (atomically): ``selection`` is
    :meth:`pipeline.ensemble.select.Selection.to_dict`'s record, ``second_level`` the fitted second
    level's report (:attr:`pipeline.ensemble.second_level.SecondLevel.report`)."""
    write_json_atomic(path, {**selection, "second_level": second_level})


def load_selection(path: str | Path) -> dict[str, Any]:
    """Read what :func:`save_selection` wrote, refusing a missing or malformed file."""
    fix = "re-run `make stack CONFIG=...`"
    return _read_json(Path(path), ("labels", "columns", "second_level"), fix)


# --- the metrics file -------------------------------------------------------------------


def save_metrics(path: str | Path, metrics: dict) -> None:
    """Write the report's metrics (atomically): indented JSON with sorted keys, so two
    runs' files diff line by line."""
    write_text_atomic(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def load_metrics(path: str | Path) -> dict[str, Any]:
    """Read what :func:`save_metrics` wrote, refusing a missing or malformed file."""
    return _read_json(Path(path), ("beta", "models"), "re-run `make report CONFIG=...`")


# --- the data report and the similarity metrics ------------------------------------------

#: Keys the report reads from `make folds`' data report.
DATA_REPORT_KEYS = ("train_groups", "train_test_near_duplicates", "near_duplicate_max_distance")


def _write_json_with(path: str | Path, record: dict, required: Sequence[str], what: str) -> None:
    """Write ``record`` (atomically) unless it lacks a key its reader requires."""
    missing = [key for key in required if key not in record]
    if missing:
        raise ValueError(f"{what} for {path} lacks {missing}")
    write_json_atomic(path, record)


def save_data_report(path: str | Path, report: dict) -> None:
    """Write `make folds`' data report (atomically), refusing one the report could not read."""
    _write_json_with(path, report, DATA_REPORT_KEYS, "data report")


def load_data_report(path: str | Path) -> dict[str, Any]:
    """Read what :func:`save_data_report` wrote, refusing a missing or malformed file."""
    return _read_json(Path(path), DATA_REPORT_KEYS, "re-run `make folds CONFIG=...`")


#: Keys every similarity-metrics file holds.
SIMILARITY_KEYS = ("k", "model_precision_at_k", "pixels_precision_at_k")


def save_similarity_metrics(path: str | Path, result: dict) -> None:
    """Write `make similar`'s evaluation (atomically)."""
    _write_json_with(path, result, SIMILARITY_KEYS, "similarity metrics")


def load_similarity_metrics(path: str | Path) -> dict[str, Any]:
    """Read what :func:`save_similarity_metrics` wrote, refusing a missing or malformed file."""
    return _read_json(Path(path), SIMILARITY_KEYS, "re-run `make similar CONFIG=...`")


# --- the members' scores ------------------------------------------------------------------

#: ``stack/members.npz``: each member's epochs scored on OOF and its best epoch's
#: predictions, computed once by `make stack` and read by the report (which then opens no
#: fold file). Keys ``<member>/<field>`` for the fields of :data:`MEMBER_SCORE_FIELDS`.
MEMBER_SCORES = "members.npz"
MEMBER_SCORE_FIELDS = ("epochs", "oof_fbeta", "loss", "epoch", "thresholds", "oof", "test_prob")


def save_member_scores(path: str | Path, records: dict[str, dict]) -> None:
    """Write :func:`pipeline.ensemble.predict_manifest.member_records`' records (atomically)."""
    import numpy as np

    arrays = {"members": np.array(list(records), dtype=str)}
    for name, rec in records.items():
        arrays |= {f"{name}/{field}": np.asarray(rec[field]) for field in MEMBER_SCORE_FIELDS}
    save_npz_atomic(path, **arrays)


def load_member_scores(path: str | Path) -> dict[str, dict]:
    """Read what :func:`save_member_scores` wrote: member -> its record, in stack order."""
    z = _read_npz(Path(path), ("members",), "re-run `make stack CONFIG=...`")
    out = {}
    for name in z["members"].tolist():
        missing = [f for f in MEMBER_SCORE_FIELDS if f"{name}/{f}" not in z]
        if missing:
            raise ValueError(f"{path}: member {name!r} lacks {missing}; re-run `make stack`")
        out[name] = {f: z[f"{name}/{f}"] for f in MEMBER_SCORE_FIELDS}
    return out


# --- the predictor manifest -------------------------------------------------------------

#: The manifest's file name, in the stack stage's folder (``stack/predict.json``).
PREDICT_MANIFEST = "predict.json"
PREDICT_MANIFEST_FORMAT = 1


def save_predict_manifest(path: str | Path, manifest: dict) -> None:
    """Write :func:`pipeline.ensemble.predict_manifest.build_manifest`'s record (atomically),
    stamped with :data:`PREDICT_MANIFEST_FORMAT`."""
    write_json_atomic(path, {"format": PREDICT_MANIFEST_FORMAT, **manifest})


def load_predict_manifest(path: str | Path) -> dict:
    """Read what :func:`save_predict_manifest` wrote, or say which stage makes it."""
    path = Path(path)
    fix = (
        "a run from before the predictor manifest? run `make stack CONFIG=...` "
        "(Make re-runs it and what follows)"
    )
    manifest = _read_json(path, (), fix)
    if manifest.get("format") != PREDICT_MANIFEST_FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}; re-run `make stack`")
    return manifest


# --- the submission ----------------------------------------------------------------------


def save_submission(path: str | Path, frame: pd.DataFrame) -> None:
    """Write a submission frame that :mod:`pipeline.ensemble.submit` built and validated (atomically;
    ids and tag cells as strings, so ``001`` and an empty tag list survive)."""
    write_csv_atomic(frame, path)


def load_submission_votes(path: str | Path, test_ids, labels, id_column: str = "image"):
    """What :func:`save_submission` wrote, as (m, L) int8 votes in ``test_ids`` order and
    ``labels`` order, whether the file is wide or follows a sample's tag layout."""
    from pipeline.data.contract import read_csv_strings
    from pipeline.ensemble.submit import votes_from_submission

    path = Path(path)
    frame = read_csv_strings(path, "run `make submit` (the report scores the submission)")
    return votes_from_submission(frame, test_ids, labels, id_column, path)


# --- the external exchange file ---------------------------------------------------------

#: Where the exchange format is described (every refusal's fix points there).
EXTERNAL_DOC = "the format is in README.md, 'Teammates' models ([[external]] members)'"
#: Columns (CSV) / arrays (NPZ) besides the label columns.
EXTERNAL_ID, EXTERNAL_FOLD = "image", "fold"


def save_external_predictions(path: str | Path, image, fold, labels: Sequence[str], probs) -> None:
    """Write an exchange file (atomically): ``.csv`` (``image``, ``fold``, one column per
    label) or ``.npz`` (arrays ``image``, ``fold``, ``labels``, ``probs``), by suffix.

    ``fold`` -1 marks a test row shared by every fold (written as an empty cell in CSV).
    """
    import numpy as np
    import pandas as pd

    path = Path(path)
    image, fold = np.asarray(image).astype(str), np.asarray(fold, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if path.suffix.lower() == ".npz":
        save_npz_atomic(path, image=image, fold=fold, labels=np.asarray(labels), probs=probs)
        return
    df = pd.DataFrame(probs, columns=list(labels))
    df.insert(0, EXTERNAL_FOLD, pd.array(np.where(fold < 0, None, fold), dtype="Int64"))
    df.insert(0, EXTERNAL_ID, image)
    write_csv_atomic(df, path)


def external_row(data: dict[str, Any], i: int) -> str:
    """How an error names entry ``i`` of a file read by :func:`load_external_predictions`:
    ``<file> row <i + 2>`` for a CSV (header = row 1), ``<file> index <i>`` for an NPZ."""
    return f"{data['path']} {data['row_word']} {i + data['row_base']}"


def load_external_predictions(path: str | Path, labels: Sequence[str]) -> dict[str, Any]:
    """Read an exchange file, refusing a malformed one with its file, row and fix.

    Checks the format only (the ids and folds are checked against the data set by
    :mod:`pipeline.members.external`): the columns are ``image``, ``fold`` and exactly ``labels``
    (any order), every probability is a number in [0, 1], every fold a whole number
    (``-1`` or an empty CSV cell: a test row shared by every fold).

    Returns ``image`` (N,) str, ``fold`` (N,) int64, ``probs`` (N, L) float64 in ``labels``
    order, and ``path``, ``row_word``, ``row_base`` for :func:`external_row`.
    """
    import numpy as np

    path = Path(path)
    labels = [str(x) for x in labels]
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npz"):
        raise ValueError(f"{path}: an exchange file is a .csv or a .npz; {EXTERNAL_DOC}")
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist; put the teammate's predictions there or fix the "
            "[[external]] path in the config"
        )
    if suffix == ".csv":
        data = _read_external_csv(path, labels)
    else:
        data = _read_external_npz(path, labels)
    probs = data["probs"]
    bad = ~(np.isfinite(probs) & (probs >= 0.0) & (probs <= 1.0))
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"{external_row(data, i)}: {labels[j]} = {float(probs[i, j])!r} is not a probability in "
            "[0, 1]; write sigmoid outputs (not logits), with no NaN"
        )
    bad_fold = np.flatnonzero(data["fold"] < -1)
    if len(bad_fold):
        i = int(bad_fold[0])
        raise ValueError(
            f"{external_row(data, i)}: fold {int(data['fold'][i])}; write the row's fold in "
            "our folds CSV (or -1 / empty for a test row shared by every fold)"
        )
    return data


def _read_external_csv(path: Path, labels: list[str]) -> dict[str, Any]:
    import numpy as np

    from pipeline.data.contract import read_csv_strings

    df = read_csv_strings(path, "put the teammate's predictions there")
    where = {"path": path, "row_word": "row", "row_base": 2}
    _check_external_columns(path, list(df.columns), labels, "row 1 (header)", "column")
    fold_text = df[EXTERNAL_FOLD].str.strip()
    ok = fold_text.str.fullmatch(r"-?\d+") | (fold_text == "")
    if not ok.all():
        i = int(np.flatnonzero(~ok.to_numpy())[0])
        raise ValueError(
            f"{external_row(where, i)}: fold {fold_text.iloc[i]!r} is not a whole number; "
            "write the row's fold from our folds CSV (empty or -1: a test row for every fold)"
        )
    fold = fold_text.replace("", "-1").astype(np.int64).to_numpy()
    probs = np.empty((len(df), len(labels)), dtype=np.float64)
    for j, lab in enumerate(labels):
        text = df[lab].str.strip()
        empty = (text == "").to_numpy()
        if empty.any():
            i = int(np.flatnonzero(empty)[0])
            raise ValueError(
                f"{external_row(where, i)}: {lab} is empty (a NaN?); write a probability in "
                "[0, 1] in every label cell"
            )
        try:  # Python's float parsing: exact round trip (pandas' fast parser is not)
            values = text.to_numpy(dtype=str).astype(np.float64)
        except ValueError:
            i = next(i for i, v in enumerate(text) if not _is_float(v))
            raise ValueError(
                f"{external_row(where, i)}: {lab} = {text.iloc[i]!r} is not a number; write a "
                "probability in [0, 1] in every label cell"
            ) from None
        probs[:, j] = values
    image = df[EXTERNAL_ID].str.strip().to_numpy(dtype=str)
    return {**where, "image": image, "fold": fold, "probs": probs}


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_external_npz(path: Path, labels: list[str]) -> dict[str, Any]:
    import numpy as np

    npz = _read_npz(path, ("image", "fold", "labels", "probs"), EXTERNAL_DOC)
    where = {"path": path, "row_word": "index", "row_base": 0}
    names = npz["labels"].astype(str).tolist()
    _check_external_columns(path, ["image", "fold", *names], labels, "array labels", "entry")
    image, fold, probs = npz["image"], npz["fold"], npz["probs"]
    n = len(image)
    if image.ndim != 1 or fold.shape != (n,) or probs.shape != (n, len(names)):
        raise ValueError(
            f"{path}: image {image.shape}, fold {fold.shape}, probs {probs.shape}; expected "
            f"(N,), (N,), (N, {len(names)}) with one probs column per entry of labels; "
            f"{EXTERNAL_DOC}"
        )
    if fold.dtype.kind not in "iu" or probs.dtype.kind != "f":
        raise ValueError(
            f"{path}: fold must hold integers and probs floats, got {fold.dtype} and "
            f"{probs.dtype}; {EXTERNAL_DOC}"
        )
    order = [names.index(lab) for lab in labels]
    return {
        **where,
        "image": image.astype(str),
        "fold": fold.astype(np.int64),
        "probs": probs.astype(np.float64)[:, order],
    }


def _check_external_columns(
    path: Path, columns: list[str], labels: list[str], where: str, unit: str
) -> None:
    """``image``, ``fold`` and one column per label, in any order, nothing else."""
    for required in (EXTERNAL_ID, EXTERNAL_FOLD):
        if required not in columns:
            raise ValueError(
                f"{path} {where}: no {required!r} {unit}; write the columns image, fold, then "
                f"one per label; {EXTERNAL_DOC}"
            )
    if len(set(columns)) != len(columns):
        twice = next(c for c in columns if columns.count(c) > 1)
        raise ValueError(f"{path} {where}: {twice!r} appears twice; name each label once")
    known = {EXTERNAL_ID, EXTERNAL_FOLD, *labels}
    for c in columns:
        if c not in known:
            raise ValueError(
                f"{path} {where}: {c!r} is not a label of our labels.csv ({', '.join(labels)}); "
                "rename it to our label's name or drop it"
            )
    missing = [lab for lab in labels if lab not in columns]
    if missing:
        raise ValueError(
            f"{path} {where}: no {unit} for label(s) {missing}; predict every label of our "
            "labels.csv"
        )
