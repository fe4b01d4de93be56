"""Does a competition trick help on held-out images? (`make bench-tricks TRICK=...`)

An ablation on a finished build, with everything else fixed: the base run's build folder
is copied (``cp -a``: same folds, same trained members, same files), the config is copied
with one trick switched on, and ``make all`` runs on the copy, so Make re-runs only what
the trick touches (a seed repeat trains one more member; the other tricks refit heads or
re-run the second level). Tricks (``pipeline.config.schema``):

* ``pseudo``: ``[pseudo] enabled`` (pseudo-labelled twins of the frozen members);
* ``denoise``: ``[denoise] enabled`` (OOF-error filtering of the frozen heads' fits);
* ``repeat``: a seed repeat of the config's first fine-tuned backbone (``arch`` + ``seed``);
* ``rate``: the ``rate`` threshold rule added to ``stack.rules``;
* ``guard``: ``stack.incumbent`` set (:data:`GUARD_INCUMBENT`): the second level's global
  winner stays the plain mean of the members unless a challenger beats it on the outer CV
  with a paired interval above 0.

Both arms' submissions are scored against the held-out truth: macro F2 and F1 of the
submitted labels (the F2-tuned vote), each with a paired bootstrap 95% interval of trick -
base over the held-out images, plus each arm's OOF F2 and the report's F1 (thresholds
re-tuned for F1). Writes ``build/bench/tricks_<name>_<trick>.json``, prints one line.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import numpy as np

TRICKS = ("pseudo", "denoise", "repeat", "rate", "guard")
REPEAT_SEED = 1001
#: the guard's incumbent: the simplest candidate (every member's mean, shrunk thresholds)
GUARD_INCUMBENT = "mean_members/shrunk"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def trick_config(text: str, trick: str) -> str:
    """The base config's text with ``trick`` switched on (appended or inserted tables)."""
    raw = tomllib.loads(text)
    if trick == "pseudo":
        return text + "\n[pseudo]\nenabled = true\n"
    if trick == "denoise":
        return text + "\n[denoise]\nenabled = true\n"
    if trick == "rate":
        rules = list(raw.get("stack", {}).get("rules", ["per_label", "global", "shrunk"]))
        return _set_stack(text, raw, "rules", [*rules, "rate"])
    if trick == "guard":
        return _set_stack(text, raw, "incumbent", GUARD_INCUMBENT)
    if trick == "repeat":
        first = dict(raw["train"]["backbones"][0])
        first["arch"] = first.get("arch", first["name"])
        first["name"] = f"{first['name']}_s{REPEAT_SEED}"
        first["seed"] = REPEAT_SEED
        body = "\n".join(f"{k} = {_toml_value(v)}" for k, v in first.items())
        return text + f"\n[[train.backbones]]\n{body}\n"
    raise ValueError(f"unknown trick {trick!r}; choose from {TRICKS}")


def _set_stack(text: str, raw: dict, key: str, value) -> str:
    """``text`` with ``[stack] key = value`` added (the table appended when it is absent)."""
    line = f"{key} = {_toml_value(value)}"
    if "stack" not in raw:
        return text + f"\n[stack]\n{line}\n"
    if key in raw["stack"]:
        raise ValueError(f"the config sets stack.{key}: change it by hand")
    head, tail = text.split("\n[stack]\n", 1)
    return f"{head}\n[stack]\n{line}\n{tail}"


def _submission(folder: Path, name: str) -> Path:
    found = [p for p in folder.glob(f"{name}-*.csv") if not p.name.endswith(".labels.csv")]
    if len(found) != 1:
        raise FileNotFoundError(f"{folder}: expected one {name}-*.csv submission, found {found}")
    return found[0]


def score(cfg, base_sub: Path, trick_sub: Path, n_boot: int, seed: int) -> dict:
    """Held-out macro F2 / F1 of both submissions, with paired intervals of trick - base."""
    from pipeline.artifacts import load_submission_votes
    from pipeline.data.contract import read_labels, read_test_ids, read_test_truth
    from pipeline.metrics import fbeta_per_label, paired_bootstrap

    labels = read_labels(cfg.data.train_dir, cfg.data.id_column, check_images=False).labels
    test_ids, _ = read_test_ids(cfg.data.test_dir, cfg.data.id_column, check_images=False)
    truth = read_test_truth(cfg.data.test_truth, labels, cfg.data.id_column, test_ids)
    y = truth[list(labels)].to_numpy(dtype=np.float64)
    a = load_submission_votes(trick_sub, test_ids, labels, cfg.data.id_column)
    b = load_submission_votes(base_sub, test_ids, labels, cfg.data.id_column)
    out = {"n_images": int(len(y))}
    for key, beta in (("f2", 2.0), ("f1", 1.0)):
        out[f"base_test_{key}"] = float(fbeta_per_label(y, b, beta).mean())
        out[f"trick_test_{key}"] = float(fbeta_per_label(y, a, beta).mean())
        boot = paired_bootstrap(y, a, b, beta, n_boot, seed)
        out[f"gain_{key}"] = boot["gain"]
        out[f"gain_{key}_ci"] = [boot["low"], boot["high"]]
    return out


def main(argv: list[str] | None = None) -> int:
    from pipeline.artifacts import load_metrics, write_json_atomic
    from pipeline.config.schema import load_config

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--trick", choices=TRICKS, required=True)
    ap.add_argument("--build", type=Path, required=True, help="the base run's finished build")
    ap.add_argument("--folds", type=Path, required=True)
    ap.add_argument("--submissions", type=Path, default=Path("submissions"))
    ap.add_argument("--work", type=Path, required=True, help="the trick's build folder")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    if not cfg.data.test_truth:
        raise SystemExit(
            "error: bench-tricks scores held-out labels: the config needs data.test_truth"
        )
    base_metrics = load_metrics(args.build / "report" / "metrics.json")
    name = args.config.stem
    work = args.work
    if not (work / "build").is_dir():
        work.mkdir(parents=True, exist_ok=True)
        shutil.copytree(args.build, work / "build.tmp", symlinks=True)
        (work / "build.tmp").rename(work / "build")
    config = work / f"{name}.toml"
    config.write_text(trick_config(args.config.read_text(), args.trick))
    t0 = time.perf_counter()
    cmd = [
        "make",
        "all",
        f"CONFIG={config}",
        f"BUILD={work / 'build'}",
        f"FOLDS={args.folds}",
        f"SUBMISSIONS={work / 'submissions'}",
    ]
    print(" ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit(f"error: make all of the {args.trick} arm failed")
    seconds = time.perf_counter() - t0
    trick_metrics = load_metrics(work / "build" / "report" / "metrics.json")
    result = {
        "name": cfg.name,
        "trick": args.trick,
        "config": str(config),
        "make_all_s": round(seconds, 1),
        "base_oof_f2": base_metrics["models"]["vote"]["oof_fbeta_macro"],
        "trick_oof_f2": trick_metrics["models"]["vote"]["oof_fbeta_macro"],
        "base_report_test_f1": base_metrics["models"]["vote"].get("test_f1_macro"),
        "trick_report_test_f1": trick_metrics["models"]["vote"].get("test_f1_macro"),
        "second_level": trick_metrics.get("second_level"),
        **score(
            cfg,
            _submission(args.submissions, name),
            _submission(work / "submissions", name),
            args.n_boot,
            cfg.stack.seed,
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    print(
        f"tricks[{cfg.name} {args.trick}]: vote F2 {result['base_test_f2']:.4f} -> "
        f"{result['trick_test_f2']:.4f}, gain {result['gain_f2']:+.4f} "
        "[{:+.4f}, {:+.4f}]".format(*result["gain_f2_ci"])
        + f"; F1 {result['base_test_f1']:.4f} -> {result['trick_test_f1']:.4f}, gain "
        f"{result['gain_f1']:+.4f} "
        + "[{:+.4f}, {:+.4f}]".format(*result["gain_f1_ci"])
        + f"; OOF F2 {result['base_oof_f2']:.4f} -> {result['trick_oof_f2']:.4f}"
        f" ({result['make_all_s']:.0f} s) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
