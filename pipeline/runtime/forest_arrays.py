"""Several fitted scikit-learn random forests as flat NumPy arrays, predicted together.

Why: ``RandomForestClassifier.predict_proba`` dispatches every tree through joblib with
input checks, which costs ~0.5 ms per tree whatever the row count. Two-Flow has one forest
per label and fold (5 folds x 15 labels x 60 trees on the demo), so scoring one uploaded
image cost ~0.4 s in that overhead alone. Here every tree of every forest walks the rows
at once, one NumPy step per tree level.

The result equals scikit-learn's bit for bit: rows are compared as float32 (as the trees
see them) against the float64 thresholds, each tree's leaf holds the class fractions
scikit-learn returns, and the trees' probabilities are summed one tree after another, in
the forest's order, then divided by the tree count, as ``ForestClassifier.predict_proba``
does. ``tests/test_forest_arrays.py`` checks it against scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ForestArrays:
    """The trees of ``forests`` (fitted ``RandomForestClassifier``s on the same features),
    packed; :meth:`predict_positive` gives each forest's probability of class ``positive``.

    Args:
        forests: fitted forests; all take the same feature columns.
        positive: the class whose probability is returned (e.g. 1).
    """

    def __init__(self, forests: Sequence, positive=1):
        if not forests:
            raise ValueError("no forests to pack")
        n_trees = {len(f.estimators_) for f in forests}
        if len(n_trees) != 1:
            raise ValueError(f"forests have different tree counts {sorted(n_trees)}")
        self.n_forests = len(forests)
        self.n_trees = n_trees.pop()
        left, right, feature, threshold, value, roots = [], [], [], [], [], []
        offset, depth = 0, 0
        # tree t of forest f sits at column t * n_forests + f: one column block per tree index
        for t in range(self.n_trees):
            for forest in forests:
                cls = list(forest.classes_).index(positive)
                tree = forest.estimators_[t].tree_
                n = tree.node_count
                idx = np.arange(offset, offset + n)
                leaf = tree.children_left == -1
                left.append(np.where(leaf, idx, tree.children_left + offset))
                right.append(np.where(leaf, idx, tree.children_right + offset))
                feature.append(np.where(leaf, 0, tree.feature))
                threshold.append(np.where(leaf, np.inf, tree.threshold))
                value.append(tree.value[:, 0, cls])
                roots.append(offset)
                offset += n
                depth = max(depth, tree.max_depth)
        self.left = np.concatenate(left).astype(np.int64)
        self.right = np.concatenate(right).astype(np.int64)
        self.feature = np.concatenate(feature).astype(np.int64)
        self.threshold = np.concatenate(threshold).astype(np.float64)
        self.value = np.concatenate(value).astype(np.float64)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.depth = depth

    FIELDS = ("left", "right", "feature", "threshold", "value", "roots")

    def state(self) -> dict[str, np.ndarray]:
        """The packed trees as plain arrays (``make export`` saves them in an npz)."""
        return {
            **{k: getattr(self, k) for k in self.FIELDS},
            "shape": np.array([self.n_forests, self.n_trees, self.depth], dtype=np.int64),
        }

    @classmethod
    def from_state(cls, state) -> ForestArrays:
        """What :meth:`state` gave, packed again (no scikit-learn needed)."""
        packed = cls.__new__(cls)
        for k in cls.FIELDS:
            setattr(packed, k, np.asarray(state[k]))
        packed.n_forests, packed.n_trees, packed.depth = (int(v) for v in state["shape"])
        return packed

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """(n, n_trees * n_forests) the leaf each row reaches in each tree."""
        x = np.asarray(X, dtype=np.float32).astype(np.float64)  # as the trees compare
        rows = np.arange(len(x))[:, None]
        node = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
        for _ in range(self.depth):
            go_left = x[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(go_left, self.left[node], self.right[node])
        return node

    def predict_positive(self, X: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """(n, n_forests) float64: each forest's ``predict_proba(X)[:, positive]`` (rows in
        chunks of ``chunk``, which bounds memory)."""
        out = np.zeros((len(X), self.n_forests), dtype=np.float64)
        for start in range(0, len(X), chunk):
            rows = slice(start, start + chunk)
            leaf = self.value[self.leaves(X[rows])]
            per_tree = leaf.reshape(len(leaf), self.n_trees, self.n_forests)
            for t in range(self.n_trees):  # one tree after another, as scikit-learn sums
                out[rows] += per_tree[:, t]
        out /= self.n_trees
        return out
