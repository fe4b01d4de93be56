"""Score images with a finished run: one base model, or the full ensemble.

The ensemble path repeats, for new images, exactly what the stages did for the test set:
every base column the second level uses, ``(member, epoch)``, is predicted by each of the
K fold models at that epoch (flip TTA as in training), the K feature cubes go through the
chosen second-level combiners (``pipeline.ensemble.second_level``), each fold's stacked
probabilities are thresholded and the K votes are bagged by majority (``submit.tie`` on
ties). A single base model is its best epoch (by OOF macro F-beta), the mean of its K fold
models, at its own OOF thresholds, as the report scores it. So a test image gets the labels
its submission row has.

Nothing is recomputed here: which columns, epochs and thresholds come from the run's
artifacts. `make stack` writes ``stack/predict.json``
(:func:`pipeline.ensemble.predict_manifest.build_manifest`: each base model's best epoch, its OOF
thresholds and the columns the second level reads) beside ``stacked.npz``; the ensemble
thresholds are ``thresholds.json``. Both are read through :mod:`pipeline.artifacts`.

Two ways to run the models. ``compiled=True`` (`make serve`, a long-lived process): a model
per (member, fold, epoch) is built once and kept, never swapping weights, and the models one
request needs run as one traced Keras model (one call, no per-model overhead), built and
traced by :meth:`Predictor.warm_up`. Default (`make predict`, one-off): one model per
backbone, each fold x epoch weight file loaded right before its eager call, because a
one-off run uses each weight set once and building a model costs more than loading one.

Needs a run's ``build/<name>/``: ``cnn/<backbone>.fold<k>/weights_epoch<EEE>.weights.h5``,
``twoflow/fold<k>.joblib`` (if Two-Flow is on), ``frozen/<member>.fold<k>.head.npz`` (frozen
members), ``stack/`` (``models/``, ``predict.json``) and ``thresholds.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.artifacts import PREDICT_MANIFEST, load_predict_manifest, load_thresholds
from pipeline.config.schema import Config
from pipeline.members.registry import FROZEN, PSEUDO, TWOFLOW, Registry
from pipeline.runtime.exported import (  # noqa: F401 (Prediction, decode: re-exported)
    ENSEMBLE,
    Key,
    Prediction,
    Scorer,
    decode,
    ensemble_detail,
    image_batch,
)


def backbone_model(b, n_labels: int, size: int):
    """An untrained Keras model of backbone config ``b`` (its weights are loaded after)."""
    from pipeline.models.backbones import build_model

    return build_model(
        b.architecture,
        n_labels,
        size,
        "none",
        b.head_layers,
        b.head_units,
        b.width,
        bn_momentum=b.bn_momentum,
    )


class Predictor(Scorer):
    """Loads a finished run once; :meth:`predict` scores images.

    Args:
        cfg: the run's config.
        build_dir: its build folder (``build/<name>``).
        compiled: run each request's models as one traced Keras model (for a long-lived
            process: tracing costs seconds once, then a call has no per-model overhead);
            by default each model is called eagerly (a one-off `make predict`).
    """

    def __init__(self, cfg: Config, build_dir: str | Path, compiled: bool = False):
        from pipeline.ensemble.second_level import SecondLevel

        self.cfg = cfg
        self.build = Path(build_dir)
        self.compiled = compiled
        # Keras traces its predict function again on the second call (measured: the first
        # request after a one-call warm-up took 24 s, the later ones 0.3 s)
        self.warm_calls = 2 if compiled else 1
        self.tta_flip = cfg.train.tta_flip
        self.size = cfg.data.image_size
        stack = self.build / "stack"
        th_path = self.build / "thresholds.json"
        if not th_path.is_file():
            raise FileNotFoundError(f"{th_path} does not exist; run `make all CONFIG=...` first")
        self.level = SecondLevel.load(stack / "models")
        self.columns = list(self.level.columns)
        self.labels = list(self.level.labels)
        self.thresholds = load_thresholds(th_path, self.labels, stack / "models")["thresholds"]
        manifest = load_predict_manifest(stack / PREDICT_MANIFEST)
        if manifest["labels"] != self.labels:
            raise ValueError(
                f"{stack / PREDICT_MANIFEST} and {stack / 'models'} disagree; re-run `make stack`"
            )
        self.used_columns = [self.columns[c] for c in self.level.used_columns]
        self.tie = cfg.submit.tie
        self.n_folds = int(manifest["n_folds"])
        if self.n_folds != cfg.folds.n_folds:
            raise ValueError(
                f"{stack / PREDICT_MANIFEST} is of a {self.n_folds}-fold run, the config says "
                f"{cfg.folds.n_folds} folds; re-run `make all CONFIG=...`"
            )
        self.singles: dict[str, tuple[int, np.ndarray, float]] = {
            name: (int(m["epoch"]), np.asarray(m["thresholds"], dtype=np.float64), m["oof_fbeta"])
            for name, m in manifest["members"].items()
        }
        # pseudo-labelled twins score a new image as their member, with their own heads
        self.registry = Registry(cfg)
        # [[external]] members were trained elsewhere: no model here to score a new image
        self.external = {m.name for m in self.registry if not m.scorable} | {
            name for name in self.singles if name not in self.registry
        }
        self.ensemble_detail = ensemble_detail(
            len(self.used_columns), self.n_folds, [c for c, _ in self.level.choice]
        )
        self._nets: dict[tuple, object] = {}  # see _net: every model, built once
        self._bundles: dict[tuple, object] = {}  # (size, calls) -> one traced model
        # eager: backbone -> (model, {output kinds: view}, [the net its weights are of])
        self._shells: dict[str, tuple] = {}
        self._weight_files: dict[str, object] = {}  # backbone -> its WeightFile loader
        self._twoflow: dict[int, object] = {}
        self._heads: dict[tuple[str, int], object] = {}

    # ---- networks: built once, never swapped --------------------------------------------

    def _twoflow_cnn(self, fold: int) -> Key:
        b = self.cfg.twoflow_backbone
        return (b, fold, self.cfg.backbone(b).epochs)  # its final epoch, as in fit

    def net_of(self, key: Key) -> tuple:
        """The network a base column runs: ("cnn", b, k, e), ("embed", b, k, e) or
        ("frozen", backbone name)."""
        member, fold, _ = key
        kind = self.registry.kind(member)
        if kind == TWOFLOW:
            return ("embed", *self._twoflow_cnn(fold))
        if kind in (FROZEN, PSEUDO):
            return ("frozen", self.registry[member].frozen.name)
        return ("cnn", *key)

    def net_input(self, net: tuple) -> tuple[int, bool]:
        """(input size, flip TTA) of a network."""
        if net[0] == "frozen":
            f = next(f for f in self.cfg.frozen if f.name == net[1])
            return f.image_size, f.tta_flip
        return self.size, self.tta_flip

    def _net(self, net: tuple):
        """The Keras model of a "cnn" or "frozen" net (built and its weights loaded once;
        an "embed" net is read from its "cnn" net's model, see :meth:`_calls`)."""
        if net in self._nets:
            return self._nets[net]
        if net[0] == "frozen":
            from pipeline.members.frozen import frozen_backbone

            f = next(f for f in self.cfg.frozen if f.name == net[1])
            model = frozen_backbone(f.backbone, f.weights, f.image_size)
        else:
            model = self._fold_cnn(*net[1:])
        self._nets[net] = model
        return model

    def _fold_cnn(self, backbone: str, fold: int, epoch: int):
        model = backbone_model(self.cfg.backbone(backbone), len(self.labels), self.size)
        self._load_weights(backbone, model, fold, epoch)
        return model

    def _load_weights(self, backbone: str, model, fold: int, epoch: int) -> None:
        """Fold ``fold``'s epoch ``epoch`` weights into ``model`` (a ``backbone`` model): by
        the backbone's learnt file layout (:class:`pipeline.models.weight_files.WeightFile`), in
        milliseconds instead of Keras' tree walk."""
        from pipeline.models.weight_files import WeightFile

        if backbone not in self._weight_files:
            self._weight_files[backbone] = WeightFile(model)
        self._weight_files[backbone].load(model, self._weights_path(backbone, fold, epoch))

    def _weights_path(self, backbone: str, fold: int, epoch: int) -> Path:
        from pipeline.train.fold_dir import epoch_weights_path, fold_work_dir

        path = epoch_weights_path(fold_work_dir(self.build, backbone, fold), epoch)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the run predates per-epoch weights; re-run "
                f"`make train-cnn CONFIG=...` (or `make clean` first)"
            )
        return path

    @staticmethod
    def calls(nets: list[tuple]) -> list[tuple[tuple, tuple[tuple, ...]]]:
        """Networks -> one call per model: (model's net, the nets read from its outputs).
        A fold model's "embed" net is its own pool layer: it shares the "cnn" net's call."""
        calls: dict[tuple, list[tuple]] = {}
        for net in nets:
            base = ("cnn", *net[1:]) if net[0] == "embed" else net
            calls.setdefault(base, []).append(net)
        return [(base, tuple(group)) for base, group in calls.items()]

    @staticmethod
    def _view(model, nets: tuple[tuple, ...], name: str | None = None):
        """``model`` with one output per net of ``nets`` (its own output, or for "embed"
        its pooled embedding): one call gives both."""
        import keras

        from pipeline.models.inference import embedding_output

        outs = [embedding_output(model) if n[0] == "embed" else model.outputs[0] for n in nets]
        return keras.Model(model.inputs[0], outs if len(outs) > 1 else outs[0], name=name)

    def call_model(self, base: tuple, nets: tuple[tuple, ...]):
        """The Keras model of one call (:meth:`calls`): ``base``'s network with one output
        per net of ``nets`` (``make export`` converts it)."""
        return self._view(self._net(base), nets)

    def _eager(self, base: tuple, nets: tuple[tuple, ...]):
        """A one-off prediction's model for a call: one model per backbone, its fold x
        epoch weights loaded just before its call (building a model costs more than
        loading weights, and a one-off run uses each weight set once)."""
        if base[0] == "frozen":
            return self._net(base)
        _, backbone, fold, epoch = base
        shell = self._shells.get(backbone)
        if shell is None:
            shell = self._shells[backbone] = (self._fold_cnn(backbone, fold, epoch), {}, [base])
        elif shell[2][0] != base:
            self._load_weights(backbone, shell[0], fold, epoch)
            shell[2][0] = base
        kinds = tuple(n[0] for n in nets)
        if kinds not in shell[1]:
            shell[1][kinds] = self._view(shell[0], nets)
        return shell[1][kinds]

    def _bundle(self, size: int, calls: tuple):
        """One Keras model from a ``size`` px input to every net of ``calls`` (each model
        keeps its own weights): a request's networks in one traced call."""
        if (size, calls) not in self._bundles:
            import keras

            inp = keras.Input((size, size, 3), name="image")
            outs = []
            for i, (base, nets) in enumerate(calls):
                # a bundle's parts need unique names: a view of each model under its own name
                y = self._view(self._net(base), nets, name=f"net{i}")(inp)
                outs.extend(y if isinstance(y, list | tuple) else [y])
            self._bundles[(size, calls)] = keras.Model(inp, outs, name=f"bundle{size}")
        return self._bundles[(size, calls)]

    def _run_nets(self, images: list[np.ndarray], nets: list[tuple]) -> dict[tuple, np.ndarray]:
        """Each network's (n, ...) outputs on the images (flip-TTA mean), one input batch per
        (size, TTA), one call per model (or one call for all in compiled mode)."""
        from pipeline.models.inference import flip_mean

        groups: dict[tuple[int, bool], list[tuple]] = {}
        for net in dict.fromkeys(nets):
            groups.setdefault(self.net_input(net), []).append(net)
        out = {}
        for (size, tta), group in groups.items():
            x = image_batch(images, size, tta)
            calls = tuple(self.calls(group))
            if self.compiled:
                ys = self._bundle(size, calls).predict_on_batch(x)
                ys = list(ys) if isinstance(ys, list | tuple) else [ys]
            else:
                ys = []
                for base, call_nets in calls:
                    y = self._eager(base, call_nets)(x, training=False)
                    ys.extend(y if isinstance(y, list | tuple) else [y])
            flat = [net for _, call_nets in calls for net in call_nets]
            for net, y in zip(flat, ys, strict=True):
                out[net] = flip_mean(np.asarray(y, dtype=np.float32), tta)
        return out

    def stack(self, P: np.ndarray) -> np.ndarray:
        return self.level.predict_proba(P)

    def columns_of(self, images: list[np.ndarray], keys: list[Key]) -> dict[Key, np.ndarray]:
        from pipeline.members.frozen import load_head

        nets = self._run_nets(images, [self.net_of(key) for key in keys])
        pixels = None
        out = {}
        for key in keys:
            member, fold, _ = key
            y = nets[self.net_of(key)]
            kind = self.registry.kind(member)
            if kind == TWOFLOW:
                from pipeline.members.twoflow import load_model

                if fold not in self._twoflow:
                    path = self.registry[member].model_path(self.build, fold)
                    self._twoflow[fold] = load_model(path)
                tf_model = self._twoflow[fold]
                if pixels is None:
                    from pipeline.models.inference import decoded_pixels

                    pixels = decoded_pixels(images, tf_model.pixel_size)
                y = tf_model.predict_proba(pixels, y)
            elif kind in (FROZEN, PSEUDO):
                if (member, fold) not in self._heads:
                    path = self.registry[member].model_path(self.build, fold)
                    self._heads[(member, fold)] = load_head(path)
                y = self._heads[(member, fold)].predict_proba(y)
            out[key] = np.asarray(y, dtype=np.float32)
        return out
