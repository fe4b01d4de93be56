"""`make export`: a finished run as one self-contained folder that predicts without it.

:func:`export_run` writes ``build/<name>/export/`` (the format :mod:`pipeline.runtime.exported`
reads and documents): every network a scorable model reads converted to ONNX (each fold
model at each epoch a model reads, its pooled embedding as a second output when Two-Flow
reads it; each frozen ImageNet backbone; the similarity index's network), the frozen heads
and Two-Flow as arrays, the chosen second-level combiners as JSON, thresholds, labels, the
runtime's code, and a manifest with the versions and the config's hash.

Every converted network is checked on the spot: ONNX Runtime's output on a probe batch must
equal Keras' within :data:`NET_TOLERANCE`, or the export fails naming the network. The
folder is written beside its place and renamed in, so a failed or killed export leaves the
previous one (or none), never half of one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np

from pipeline.config.schema import STUDENT, Config
from pipeline.report.summary import versions
from pipeline.runtime.exported import FORMAT_VERSION, MANIFEST, column_id, image_batch

log = logging.getLogger(__name__)

#: the largest |ONNX - Keras| difference a converted network may show on the probe batch
NET_TOLERANCE = 1e-4

#: the modules of pipeline/runtime/ an export runs (relative imports among themselves only)
RUNTIME_MODULES = ("exported", "ops", "heads", "images", "forest_arrays", "xgb_trees")
RUNTIME_PACKAGE = "runtime"

_INIT = '''"""An exported ensemble's runtime (copied by `make export`); see exported.py."""

from .exported import ENSEMBLE, Exported, Prediction, load, main

__all__ = ["ENSEMBLE", "Exported", "Prediction", "load", "main"]
'''
_MAIN = """import sys

from .exported import main

sys.exit(main())
"""


def net_id(base: tuple) -> str:
    """A network's file stem: ``<backbone>.fold<k>.epoch<EEE>`` or ``frozen.<name>``."""
    if base[0] == "frozen":
        return f"frozen.{base[1]}"
    _, backbone, fold, epoch = base
    return f"{backbone}.fold{int(fold)}.epoch{int(epoch):03d}"


#: the libraries whose versions the manifest records: those that made and that run it
EXPORT_PACKAGES = (
    "fashion-ensemble",
    "numpy",
    "onnxruntime",
    "onnx",
    "tf2onnx",
    "keras",
    "tensorflow",
    "xgboost",
    "scikit-learn",
    "opencv-python-headless",
)


def convert(model, path: Path, size: int, tta_flip: bool, what: str) -> None:
    """Keras ``model`` -> ONNX file ``path``, checked against Keras on a probe batch."""
    import onnxruntime as ort

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)  # a dozen lines per network
    rng = np.random.default_rng(0)
    probe = image_batch(
        [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2)], size, tta_flip
    )
    with warnings.catch_warnings():  # Keras: "the structure of inputs doesn't match" (it does)
        warnings.simplefilter("ignore", UserWarning)
        want = model(probe, training=False)  # a direct call: no predict function per model
    want = [np.asarray(w) for w in (want if isinstance(want, list | tuple) else [want])]
    model.export(str(path), format="onnx", verbose=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: probe})
    if len(got) != len(want):
        raise RuntimeError(f"{what}: ONNX has {len(got)} outputs, Keras {len(want)}")
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        diff = float(np.max(np.abs(np.asarray(g) - np.asarray(w))))
        if not diff <= NET_TOLERANCE:
            raise RuntimeError(
                f"{what}: output {i} of the ONNX conversion differs from Keras by {diff:.2e} "
                f"(> {NET_TOLERANCE}); the network cannot be exported as it is"
            )


def twoflow_arrays(model) -> dict[str, np.ndarray]:
    """A fitted ``TwoFlowModel`` as the arrays :class:`pipeline.runtime.exported.TwoFlow` reads."""
    components = model.projection_.components_
    if hasattr(components, "toarray"):
        components = components.toarray()
    fitted = [j for j, f in enumerate(model.forests_) if f is not None]
    arrays = {
        "pixel_size": np.asarray(model.pixel_size),
        "components": np.asarray(components),
        "selected": np.asarray(model.selected_, dtype=np.int64),
        "constant": np.nan_to_num(np.asarray(model.constant_, dtype=np.float32)),
        "fitted": np.asarray(fitted, dtype=np.int64),
    }
    if fitted:
        from pipeline.runtime.forest_arrays import ForestArrays

        packed = ForestArrays([model.forests_[j] for j in fitted])
        arrays.update({f"forest_{k}": v for k, v in packed.state().items()})
    return arrays


def second_level_state(level, stack_models: Path, out: Path) -> None:
    """The chosen combiners of ``level`` (a ``pipeline.ensemble.second_level.SecondLevel``) ->
    ``out/second_level.json`` (+ ``out/<xgb combiner>/label<j>.fold<k>.json``)."""
    from pipeline.ensemble.stack import jsonable

    out.mkdir(parents=True)
    choice = [name for name, _ in level.choice]
    combiners = {}
    for name in dict.fromkeys(choice):
        est = level.combiners[name]
        kind = type(est).__name__
        rec = {"class": kind, "state": est.get_state()}
        if kind == "LogisticCombiner":
            rec["scope"] = est.scope
        if kind == "XGBCombiner":
            stacker = est.stacker_
            rec["state"] = {
                "features_per_label": [np.asarray(f).tolist() for f in stacker.features_],
                "n_models": [len(b) for b in stacker.models_],
            }
            shutil.copytree(stack_models / name, out / name, ignore=shutil.ignore_patterns("*.npy"))
        combiners[name] = rec
    state = {"labels": level.labels, "choice": choice, "combiners": combiners}
    (out / "second_level.json").write_text(json.dumps(jsonable(state)) + "\n")


def write_runtime(out: Path) -> None:
    """The runtime package: the repository's modules it needs, as they are."""
    pkg = out / RUNTIME_PACKAGE
    pkg.mkdir()
    here = Path(__file__).resolve().parent / "runtime"  # the package pipeline.runtime
    for name in RUNTIME_MODULES:
        shutil.copy2(here / f"{name}.py", pkg / f"{name}.py")
    (pkg / "__init__.py").write_text(_INIT)
    (pkg / "__main__.py").write_text(_MAIN)


def export_run(cfg: Config, config_path: str | Path, build_dir: str | Path, out: str | Path):
    """Write the export of the finished run in ``build_dir`` to folder ``out``.

    Every model of the run is exported except those reading ``[[external]]`` members (their
    predictions came as files: nothing here can score a new image with them).
    """
    from tqdm.auto import tqdm

    from pipeline.artifacts import atomic_dir, save_npz_atomic
    from pipeline.members.registry import FROZEN, PSEUDO, TWOFLOW
    from pipeline.predict import Predictor
    from pipeline.runtime.exported import ENSEMBLE

    build = Path(build_dir)
    p = Predictor(cfg, build)
    models = [m for m in p.model_names if not p.external_members(m)]
    if not models:
        raise ValueError(
            "every model of this run reads [[external]] members: nothing to export "
            "(an export scores new images; teammates' files cannot)"
        )
    keys = list(dict.fromkeys(key for m in models for key in p.base_columns(m)))
    calls = p.calls(list(dict.fromkeys(p.net_of(key) for key in keys)))
    columns: dict[str, dict] = {}
    nets: dict[str, dict] = {}
    with atomic_dir(out) as tmp:
        (tmp / "nets").mkdir()
        for base, call_nets in tqdm(calls, desc="export networks", unit="net", mininterval=1):
            name = net_id(base)
            size, tta = p.net_input(base)
            convert(p.call_model(base, call_nets), tmp / "nets" / f"{name}.onnx", size, tta, name)
            nets[name] = {
                "file": f"nets/{name}.onnx",
                "size": int(size),
                "tta_flip": bool(tta),
                "outputs": [n[0] for n in call_nets],
            }
        where = {net: (net_id(base), i) for base, ns in calls for i, net in enumerate(ns)}
        for key in keys:
            member, fold, _ = key
            name, output = where[p.net_of(key)]
            spec: dict = {"net": name, "output": output}
            m = p.registry[member]
            if m.kind == TWOFLOW:
                from pipeline.members.twoflow import load_model

                rel = f"twoflow/fold{fold}.npz"
                if not (tmp / rel).is_file():
                    model = load_model(m.model_path(build, fold))
                    save_npz_atomic(tmp / rel, **twoflow_arrays(model))
                spec["twoflow"] = rel
            elif m.kind in (FROZEN, PSEUDO):
                rel = f"heads/{member}.fold{fold}.npz"
                (tmp / "heads").mkdir(exist_ok=True)
                shutil.copy2(m.model_path(build, fold), tmp / rel)
                spec["head"] = rel
            columns[column_id(key)] = spec
        similar = export_similar(build, tmp, nets)
        student = export_student(cfg, build, tmp, nets, columns, p.labels)
        second_level_state(p.level, build / "stack" / "models", tmp / "second_level")
        write_runtime(tmp)
        manifest = {
            "format": FORMAT_VERSION,
            "name": cfg.name,
            "config": str(config_path),
            "config_sha256": hashlib.sha256(Path(config_path).read_bytes()).hexdigest(),
            "versions": versions(EXPORT_PACKAGES),
            "labels": p.labels,
            "n_folds": p.n_folds,
            "tie": p.tie,
            "thresholds": np.asarray(p.thresholds, dtype=np.float64).tolist(),
            "ensemble": {
                "columns": [[b, int(e)] for b, e in p.columns],
                "used": [[b, int(e)] for b, e in p.used_columns],
                "second_level": "second_level",
                "detail": p.ensemble_detail,
                "exported": ENSEMBLE in models,
            },
            "singles": {
                **{
                    name: {"epoch": e, "thresholds": th.tolist(), "oof_fbeta": f}
                    for name, (e, th, f) in p.singles.items()
                    if name in models
                },
                **({STUDENT: {**student, "oof_fbeta": None, "folds": 1}} if student else {}),
            },
            "external": sorted(p.external),
            "nets": nets,
            "columns": columns,
            "similar": similar,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("exported %d networks, %d base columns -> %s", len(nets), len(columns), out)
    return Path(out)


def export_similar(build: Path, tmp: Path, nets: dict[str, dict]) -> dict | None:
    """The similarity index's network (when the index is of CNN embeddings) -> ONNX, added
    to ``nets``; its manifest entry (None without one)."""
    from pipeline.similar import SimilarityIndex

    path = build / "similar" / "index.npz"
    if not path.is_file():
        return None
    idx = SimilarityIndex.load(path)
    if idx.kind != "model":
        return None
    from pipeline.models.inference import embedding_model, load_checkpoint

    model = embedding_model(load_checkpoint(idx.model_path))
    convert(model, tmp / "nets" / "similar.onnx", idx.image_size, idx.tta_flip, "similar")
    nets["similar"] = {
        "file": "nets/similar.onnx",
        "size": int(idx.image_size),
        "tta_flip": bool(idx.tta_flip),
        "outputs": ["embed"],
    }
    return {
        "net": "similar",
        "output": 0,
        "index_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def export_student(
    cfg: Config, build: Path, tmp: Path, nets: dict, columns: dict, labels: list[str]
) -> dict | None:
    """The distilled student's last epoch (``[student]``) -> an ONNX network, added to
    ``nets`` and ``columns``; its manifest entry (None when the student is off)."""
    if not cfg.student.enabled:
        return None
    from pipeline.predict import backbone_model
    from pipeline.train.fold_dir import epoch_weights_path

    b = cfg.backbone(cfg.student_backbone)
    epoch = cfg.student.epochs or b.epochs
    weights = epoch_weights_path(build / "student" / "work", epoch)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing; run `make student CONFIG=...`")
    model = backbone_model(b, len(labels), cfg.data.image_size)
    model.load_weights(weights)
    name = f"{STUDENT}.epoch{epoch:03d}"
    size, tta = cfg.data.image_size, cfg.train.tta_flip
    convert(model, tmp / "nets" / f"{name}.onnx", size, tta, name)
    nets[name] = {"file": f"nets/{name}.onnx", "size": size, "tta_flip": tta, "outputs": ["cnn"]}
    columns[column_id((STUDENT, 0, epoch))] = {"net": name, "output": 0}
    th = json.loads((build / "student" / "thresholds.json").read_text())
    if th["labels"] != list(labels) or th["epoch"] != epoch:
        raise ValueError(f"{build / 'student'} is of another run; run `make student CONFIG=...`")
    return {
        "epoch": epoch,
        "thresholds": th["thresholds"],
        "detail": f"distilled student ({b.architecture}), epoch {epoch}, thresholds fitted to "
        "the ensemble's test labels",
    }
