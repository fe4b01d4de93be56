"""The second level: column selection, combiners, the per-label XGBoost stacker, the nested-CV
choice, thresholds, the vote and the submission."""
