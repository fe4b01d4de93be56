"""Base models besides the fine-tuned CNNs: Two-Flow forests, frozen-feature heads, the
scikit-learn baseline and teammates' external models."""
