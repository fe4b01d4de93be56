"""An XGBoost booster's JSON model scored in NumPy, as ``Booster.inplace_predict`` scores it.

Why: importing ``xgboost`` imports scikit-learn whenever it is installed (its ``compat``
module), so an exported ensemble whose second level chose XGBoost would pull the training
stack into a predictor meant to need NumPy and ONNX Runtime only, and pay its import time
on every cold start. The boosters' own JSON (``Booster.save_model``) holds every tree; here
every tree walks the rows at once, one NumPy step per tree level.

Supported: the ``gbtree`` booster with numerical splits, one target, objective
``binary:logistic`` or ``reg:logistic`` (what :class:`pipeline.ensemble.combiners.XGBCombiner`
fits); anything else is refused by name. As XGBoost does, a row goes left when its value is
below the split (compared as float32) and takes the node's default side when the value is
missing (NaN); leaves are added tree after tree in float32 to the base margin, then the
sigmoid. ``tests/test_xgb_trees.py`` checks it against ``xgboost`` on missing values too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_LOGISTIC = ("binary:logistic", "reg:logistic")
_EPS = 1e-6  # how close to 0 or 1 XGBoost lets a logistic base score be


class BoosterArrays:
    """One binary-logistic booster's trees, packed into flat arrays.

    Args:
        model: the parsed JSON of ``Booster.save_model("*.json")``.
        source: where it came from, for error messages.
    """

    def __init__(self, model: dict, source: str = "model"):
        learner = model["learner"]
        objective = learner["objective"]["name"]
        booster = learner["gradient_booster"]
        params = learner["learner_model_param"]
        if objective not in _LOGISTIC or booster.get("name") != "gbtree":
            raise ValueError(
                f"{source}: objective {objective!r} with booster {booster.get('name')!r}; "
                f"only gbtree with {' or '.join(_LOGISTIC)} is scored without xgboost"
            )
        if int(params.get("num_class", "0")) > 1 or int(params.get("num_target", "1")) != 1:
            raise ValueError(f"{source}: a multi-class or multi-target booster is not supported")
        trees = booster["model"]["trees"]
        left, right, feature, cond, default_left, roots = [], [], [], [], [], []
        offset = 0
        for tree in trees:
            if any(tree["split_type"]):
                raise ValueError(f"{source}: categorical splits are not supported")
            n = len(tree["left_children"])
            lc = np.asarray(tree["left_children"], dtype=np.int64)
            rc = np.asarray(tree["right_children"], dtype=np.int64)
            leaf = lc < 0
            # A leaf points at itself, so a walk that reached it stays there.
            left.append(np.where(leaf, np.arange(n), lc) + offset)
            right.append(np.where(leaf, np.arange(n), rc) + offset)
            feature.append(np.where(leaf, 0, tree["split_indices"]))
            cond.append(np.asarray(tree["split_conditions"], dtype=np.float32))
            default_left.append(np.asarray(tree["default_left"], dtype=bool))
            roots.append(offset)
            offset += n
        cat = lambda parts, dtype: (  # noqa: E731
            np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
        )
        self.left = cat(left, np.int64)
        self.right = cat(right, np.int64)
        self.feature = cat(feature, np.int64)
        self.cond = cat(cond, np.float32)  # the split value, or the leaf's value at a leaf
        self.default_left = cat(default_left, bool)
        self.is_leaf = self.left == np.arange(offset)
        # node i's left child at 2i, its right at 2i + 1: one gather per level
        self.children = np.stack([self.left, self.right], axis=1).ravel()
        self.roots = np.asarray(roots, dtype=np.int64)
        base = np.float32(float(str(params["base_score"]).strip("[]")))
        # A logistic booster keeps its base score as a probability, which XGBoost clips to
        # [1e-6, 1 - 1e-6] (a label with no positive in a fold stores 0); the margin is
        # its logit.
        base = np.clip(base, np.float32(_EPS), np.float32(1.0 - _EPS))
        self.base_margin = np.float32(-np.log(np.float32(1.0) / base - np.float32(1.0)))

    @classmethod
    def load(cls, path: str | Path) -> BoosterArrays:
        path = Path(path)
        return cls(json.loads(path.read_text()), str(path))

    def margin(self, X: np.ndarray) -> np.ndarray:
        """(n,) float32: the base margin plus every tree's leaf, added in tree order."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"rows must be (n, features), got shape {X.shape}")
        n = len(X)
        out = np.full(n, self.base_margin, dtype=np.float32)
        if not len(self.roots):
            return out
        node = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        flat = X.ravel()
        row_start = (np.arange(n) * X.shape[1])[:, None]
        while not self.is_leaf[node].all():
            x = flat[row_start + self.feature[node]]
            go_right = ~(x < self.cond[node])  # NaN compares False: its default side below
            missing = np.isnan(x)
            if missing.any():
                go_right = np.where(missing, ~self.default_left[node], go_right)
            node = self.children[2 * node + go_right]
        # (n, 1 + trees) float32: the base margin, then each tree's leaf; a float32 running
        # sum (cumsum adds one after another, as XGBoost does, not pairwise) ends in column -1
        steps = np.concatenate([out[:, None], self.cond[node]], axis=1)
        return np.cumsum(steps, axis=1, dtype=np.float32)[:, -1]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n,) float32 probabilities: the sigmoid of :meth:`margin`."""
        m = self.margin(X)
        return np.float32(1.0) / (np.float32(1.0) + np.exp(-m))
