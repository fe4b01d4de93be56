"""Multi-label image ensemble pipeline: pure functions and sklearn-style classes.

Importing this package is cheap: heavy libraries (TensorFlow/Keras, XGBoost) are imported
inside the modules that need them, so ``pipeline.config.schema`` runs on a bare Python.

Conventions shared by every module:
- label matrices ``y`` are float arrays of shape (n, L) holding 1.0, 0.0 or NaN (unknown);
  NaN cells are masked out of losses, stacking, thresholds and metrics;
- probability matrices ``p`` are float arrays of shape (n, L) in [0, 1];
- image ids are strings (file names relative to the ``images/`` folder).
"""

__version__ = "0.1.0"
