"""Where a fold job's compiled model comes from: built fresh, or reused across fold jobs.

Most of a fold job's first epoch is TensorFlow tracing the training step (and optimizing
the traced graph): measured on 2 cores at 64 px, ~10 s for mobilenet_v3_small, ~2 s for
small_cnn, against 0.5 s for a later epoch of a small fold. A process that trains several
folds of one backbone need not pay it again: :class:`TrainSession` keeps each compiled
model (one per trainable scope, learning-rate range and steps per epoch: the traced step
bakes those in) and, for the next fold, loads it with that fold's freshly seeded initial
weights and a zeroed optimizer. The traced step and the values it sees are then those of
a fresh process, so the predictions and checkpoints are bit for bit the same
(``tests/test_train_session.py`` checks it). :class:`FreshModels` is the one-model-per-job
path (``train_fold``'s default).

Layer names matter to the ``.keras`` checkpoint's config, and Keras numbers auto-named
layers per process: a session therefore builds each backbone's models from the first one
it built (same names as in a fresh process) and starts afresh (``clear_session``) when a
job of another backbone arrives.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from pipeline.train.job import FoldJob, Phase

log = logging.getLogger(__name__)


def set_scope(model, scope: str, unfreeze_top: float = 0.3) -> None:
    """Make the head trainable and the feature extractor trainable per ``scope``."""
    from pipeline.models.backbones import feature_layers

    feats = feature_layers(model)
    cut = {"head": len(feats), "all": 0}.get(scope, int(round(len(feats) * (1 - unfreeze_top))))
    for i, layer in enumerate(feats):
        layer.trainable = i >= cut


def compile_for(model, job: FoldJob, phase: Phase, steps_per_epoch: int) -> None:
    """Set ``phase``'s trainable scope; compile with a fresh Adam on its LR cycle."""
    import keras

    from pipeline.models.losses import MaskedMultiLabelLoss, TriangularCyclicLR

    t = job.train
    set_scope(model, phase.scope, job.backbone.unfreeze_top)
    schedule = TriangularCyclicLR(phase.lr_min, phase.lr_max, half_cycle_steps=steps_per_epoch)
    # named, not auto-named ("adam_1" for a process's second optimizer): the name is
    # written into the weight files, which must not depend on what the process did before
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=schedule, name="adam"),
        loss=MaskedMultiLabelLoss(t.loss, t.pos_weight, t.focal_gamma, t.focal_alpha),
        jit_compile=False,
    )
    # built now, not inside the first traced step: a tf.function that creates variables
    # (Adam's moments) is traced twice, and tracing is most of a first epoch
    model.optimizer.build(model.trainable_variables)


def initial_model(job: FoldJob):
    """The job's untrained model, its weights drawn from the job's seed (seeded by the
    caller: ``keras.utils.set_random_seed(job.seed)``)."""
    from pipeline.models.backbones import build_model

    b = job.backbone
    return build_model(
        b.architecture,
        len(job.labels),
        job.image_size,
        b.weights,
        b.head_layers,
        b.head_units,
        b.width,
        seed=job.seed,
        bn_momentum=b.bn_momentum,
    )


class FreshModels:
    """One model per job, compiled (and traced) anew: what a one-fold process does."""

    def seed(self, seed: int) -> None:
        """Seed Python, NumPy, TensorFlow and Keras for the job (its weights, its steps)."""
        import keras

        keras.utils.set_random_seed(seed)

    def start(self, job: FoldJob, steps: int):
        """The compiled, untrained model of epoch 1."""
        model = initial_model(job)
        compile_for(model, job, job.phase_of(1), steps)
        return model

    def resume(self, job: FoldJob, steps: int, checkpoint, epoch: int):
        """The model and optimizer state saved in ``checkpoint`` (``.keras``) after ``epoch``."""
        import keras

        return keras.saving.load_model(checkpoint, compile=True)

    def next_phase(self, job: FoldJob, model, phase: Phase, steps: int):
        """``model``'s weights with ``phase``'s trainable scope and a fresh optimizer."""
        compile_for(model, job, phase, steps)
        return model


@dataclass
class _Entry:
    model: object
    optimizer_start: list[np.ndarray]  # the optimizer's state right after it was built


def _copy(src, dst, what: str) -> None:
    """Assign every variable of ``src`` to its twin in ``dst`` (same architecture)."""
    src, dst = list(src), list(dst)
    if len(src) != len(dst) or any(s.shape != d.shape for s, d in zip(src, dst, strict=True)):
        raise RuntimeError(f"cannot reuse a compiled model: its {what} differ from the job's")
    for s, d in zip(src, dst, strict=True):
        d.assign(s)


class TrainSession(FreshModels):
    """Compiled models reused across the fold jobs of one process (see the module doc).

    ``max_models``: compiled models kept for the current backbone (one per phase and
    steps-per-epoch value seen); the least recently used goes first.
    """

    def __init__(self, max_models: int = 6):
        self.max_models = max_models
        self._family: tuple | None = None
        self._template = None
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self.reused = 0  # models handed out without compiling (for logs and tests)

    def seed(self, seed: int) -> None:
        """As a fresh process seeds, but keeping TensorFlow's caches once a model is kept.

        ``tf.random.set_seed`` also clears the eager context's caches, which hold the
        kept models' instantiated, graph-optimized step functions; rebuilding them costs a
        fresh trace's time again. The seeds themselves are set exactly as Keras sets them.
        The cleared caches would only matter to stateful TF random ops, which Keras 3 does
        not use (its random ops are stateless, their states variables of the model, reset
        with its weights).
        """
        if not self._entries:
            return super().seed(seed)
        import keras
        from tensorflow.python import pywrap_tfe

        clear = pywrap_tfe.TFE_ContextClearCaches
        pywrap_tfe.TFE_ContextClearCaches = lambda handle: None
        try:
            keras.utils.set_random_seed(seed)
        finally:
            pywrap_tfe.TFE_ContextClearCaches = clear

    @staticmethod
    def _family_of(job: FoldJob) -> tuple:
        b = job.backbone
        arch = (b.name, b.weights, b.head_layers, b.head_units, b.width, b.bn_momentum)
        return (*arch, job.image_size, len(job.labels))

    @staticmethod
    def _key(job: FoldJob, phase: Phase, steps: int) -> tuple:
        t = job.train
        loss = (t.loss, t.pos_weight, t.focal_gamma, t.focal_alpha)
        return (phase, steps, loss, job.backbone.unfreeze_top)

    def _enter_family(self, job: FoldJob) -> None:
        family = self._family_of(job)
        if family == self._family:
            return
        import keras

        if self._family is not None:
            log.info(
                "train session: %s replaces %s; compiled models dropped", job.name, self._family[0]
            )
        self._entries.clear()
        self._template = None
        self._family = family
        keras.backend.clear_session(free_memory=True)  # layer names as in a fresh process

    def _entry(self, job: FoldJob, phase: Phase, steps: int, make_model) -> tuple[_Entry, bool]:
        """The compiled model of (phase, steps) and whether it existed; else one from
        ``make_model()``, compiled and kept."""
        key = self._key(job, phase, steps)
        if key in self._entries:
            self._entries.move_to_end(key)
            self.reused += 1
            log.info("%s fold %d: reusing a compiled model (no tracing)", job.name, job.fold)
            return self._entries[key], True
        model = make_model()
        if self._template is None:
            self._template = model
        compile_for(model, job, phase, steps)
        entry = _Entry(model, [np.array(v) for v in model.optimizer.variables])
        self._entries[key] = entry
        while len(self._entries) > self.max_models:
            self._entries.popitem(last=False)
        return entry, False

    def _twin(self):
        """A new model with the template's architecture and layer names (untrained)."""
        import keras

        return keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(self._template)
        )

    @staticmethod
    def _reset_optimizer(entry: _Entry) -> None:
        for var, value in zip(entry.model.optimizer.variables, entry.optimizer_start, strict=True):
            var.assign(value)

    def start(self, job: FoldJob, steps: int):
        self._enter_family(job)
        fresh = initial_model(job)  # the fold's seeded initial weights (cheap: no tracing)
        phase = job.phase_of(1)
        entry, reused = self._entry(
            job, phase, steps, lambda: fresh if self._template is None else self._twin()
        )
        if entry.model is not fresh:
            _copy(fresh.variables, entry.model.variables, "weights")
            self._reset_optimizer(entry)
        return entry.model

    def resume(self, job: FoldJob, steps: int, checkpoint, epoch: int):
        import keras

        self._enter_family(job)
        loaded = keras.saving.load_model(checkpoint, compile=True)
        key = self._key(job, job.phase_of(epoch), steps)
        entry = self._entries.get(key)
        if entry is None:  # the loaded model is compiled already: keep it
            if self._template is None:
                self._template = loaded
            start = [np.zeros_like(np.array(v)) for v in loaded.optimizer.variables]
            self._entries[key] = _Entry(loaded, start)
            return loaded
        self._entries.move_to_end(key)
        self.reused += 1
        log.info("%s fold %d: reusing a compiled model (no tracing)", job.name, job.fold)
        _copy(loaded.variables, entry.model.variables, "weights")
        _copy(loaded.optimizer.variables, entry.model.optimizer.variables, "optimizer states")
        return entry.model

    def next_phase(self, job: FoldJob, model, phase: Phase, steps: int):
        entry, reused = self._entry(job, phase, steps, self._twin)
        _copy(model.variables, entry.model.variables, "weights")
        if reused:
            self._reset_optimizer(entry)
        return entry.model


_SHARED: TrainSession | None = None


def shared_session() -> TrainSession:
    """This process's session: every fold job a process runs (a stage's folds, the tasks a
    long-lived Dask job process serves) shares its compiled models."""
    global _SHARED
    if _SHARED is None:
        _SHARED = TrainSession()
    return _SHARED
