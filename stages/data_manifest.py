"""The data manifest's Make rule: hash the data set's files and write the digest files that
the pipeline's rules depend on instead of the user's image names (``pipeline.data_manifest``).

Make also refreshes them at parse time (``stages.resolve_config --data-dir``); this rule
makes them when they are missing, and after ``make demo-data`` or a holdout split wrote
the data (``--touch``). Standard library only, like ``stages.resolve_config``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config import load_config
from pipeline.data_manifest import update_manifest


def run(config: Path, out_dir: Path, touch: bool = False) -> dict[str, str]:
    cfg = load_config(config)
    return update_manifest(
        out_dir, cfg.data.train_dir, cfg.data.test_dir, cfg.data.test_truth, touch
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path, required=True, help="build/<name>/data")
    ap.add_argument("--touch", action="store_true", help="rewrite every digest file")
    args = ap.parse_args(argv)
    try:
        run(args.config, args.out_dir, args.touch)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
