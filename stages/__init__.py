"""Thin command-line entry points, one per Make target (``python -m stages.<name> --help``)."""
