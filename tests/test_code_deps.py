"""Code dependencies from imports: Make's CODE_<STAGE> lists and the training fingerprint."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.code_deps import code_closure
from stages.resolve_config import code_variables
from tests.conftest import ROOT, tiny_demo_config


def _write(root: Path, rel: str, text: str = "") -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


def test_closure_follows_every_kind_of_import(tmp_path):
    _write(tmp_path, "pkg/__init__.py")
    _write(tmp_path, "pkg/sub/__init__.py")
    _write(tmp_path, "pkg/a.py", "import numpy\n\ndef f():\n    from pkg import b  # late\n")
    _write(tmp_path, "pkg/b.py", 'BUILDERS = {"x": "pkg.sub.c:build"}\n')  # entry point
    _write(tmp_path, "pkg/sub/c.py", "from . import d\nfrom ..e import NAME\n")  # relative
    _write(tmp_path, "pkg/sub/d.py", "import os.path\n")
    _write(tmp_path, "pkg/e.py", "NAME = 1\n")
    _write(tmp_path, "pkg/unused.py", "import pkg.a\n")
    _write(tmp_path, "cli/__init__.py")
    _write(tmp_path, "cli/run.py", "import pkg.a\n")
    assert code_closure(["cli/run.py"], tmp_path) == [
        "cli/__init__.py",
        "cli/run.py",
        "pkg/__init__.py",
        "pkg/a.py",
        "pkg/b.py",
        "pkg/e.py",
        "pkg/sub/__init__.py",
        "pkg/sub/c.py",
        "pkg/sub/d.py",
    ]
    with pytest.raises(FileNotFoundError, match="cli/gone.py"):
        code_closure(["cli/gone.py"], tmp_path)


def test_stage_code_holds_what_the_hand_kept_lists_missed():
    code = dict(line.split(" := ") for line in code_variables())
    train = code["CODE_TRAIN_CNN"].split()
    for module in (
        "augment/__init__",
        "data/folds",
        "distributed",
        "models/weights/__init__",
        "models/inference",
        "train/fold",
    ):
        assert f"pipeline/{module}.py" in train, module
    # a package's modules are there by name, not as the package alone
    for part in ("reader", "plans", "converters", "builders", "reference", "verification"):
        assert f"pipeline/models/weights/{part}.py" in train, part
    assert "pipeline/ensemble/select.py" in code["CODE_REPORT"].split()
    # and nothing a stage does not run: the second level never loads a CNN
    stack = code["CODE_STACK"].split()
    assert "pipeline/train/fold.py" not in stack
    assert not [f for f in stack if f.startswith("pipeline/models/weights/")], stack
    assert "pipeline/members/twoflow.py" not in code["CODE_SIMILAR"].split()


# ---- editing a deep module: Make plans the stages that run it, and only those ---------------

FINGERPRINT = """
import sys
from pathlib import Path

import numpy as np

import pipeline
from pipeline.config.schema import BackboneConfig, TrainConfig
from pipeline.train.fold import FoldJob, _prepare_work_dir, job_fingerprint

assert Path(pipeline.__file__).resolve().parent == Path.cwd() / "pipeline", pipeline.__file__
bb = BackboneConfig("small_cnn", epochs=1, batch_size=2)
job = FoldJob(bb, TrainConfig((bb,)), 0, 32, ("a",), [], np.zeros((0, 1)), np.array([]), [],
              np.array([]), [])
_prepare_work_dir(Path(sys.argv[1]), job)
print(job_fingerprint(job))
"""


class RepoCopy:
    """The pipeline's code in a folder of its own, with a tiny demo whose every target
    exists and is up to date (``make -t``), so ``make -n`` shows only what an edit re-runs."""

    def __init__(self, tmp: Path):
        self.tmp, self.repo = tmp, tmp / "repo"
        for folder in ("pipeline", "stages", "mk"):  # mk/: the Makefile's included helpers
            shutil.copytree(
                ROOT / folder, self.repo / folder, ignore=shutil.ignore_patterns("__pycache__")
            )
        for name in ("Makefile", "setup.cfg", "pyproject.toml"):
            shutil.copy2(ROOT / name, self.repo / name)
        self.config = tiny_demo_config(tmp)
        (tmp / "venv").mkdir()
        (tmp / "venv" / ".installed").touch()
        for d in ("demo/train", "demo/test", "submissions"):
            (tmp / d).mkdir(parents=True)
        for d in ("augment", "cache", "preds", "members", "embed", "baseline", "stack"):
            (tmp / "build" / d).mkdir(parents=True)
        for d in ("similar", "report"):
            (tmp / "build" / d).mkdir(parents=True)

    def make(self, *args: str) -> subprocess.CompletedProcess:
        cmd = ["make", *args, f"CONFIG={self.config}", f"BUILD={self.tmp}/build"]
        cmd += [f"FOLDS={self.tmp}/folds.csv", f"SUBMISSIONS={self.tmp}/submissions"]
        cmd += [f"VENV={self.tmp}/venv", "JOBS=1"]
        return subprocess.run(cmd, cwd=self.repo, capture_output=True, text=True, timeout=120)

    def all_up_to_date(self) -> None:
        """Every target made (touched), older than now, newer than every source."""
        touched = self.make("-t", "all")
        assert touched.returncode == 0, touched.stderr
        # -t leaves empty files, the data's digest files too; Make's next parse writes the
        # digests of the (empty) data into them: let it happen before the clocks are set
        self.make("-q", "all")
        now = time.time()
        for root, stamp in ((self.repo, now - 3600), (self.tmp, now - 60)):
            for path in root.rglob("*"):
                if path.is_file() and (root == self.repo or self.repo not in path.parents):
                    os.utime(path, (stamp, stamp))
        assert self.make("-q", "all").returncode == 0

    def edit(self, rel: str) -> None:
        with open(self.repo / rel, "a") as f:
            f.write("\n# an edit\n")

    def planned(self) -> set[str]:
        dry = self.make("-n", "all")
        assert dry.returncode == 0, dry.stderr
        return set(re.findall(r"-m stages\.(\w+)", dry.stdout))

    def fingerprint(self, work_dir: Path) -> str:
        run = subprocess.run(
            [sys.executable, "-c", FINGERPRINT, str(work_dir)],
            cwd=self.repo,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()


def test_editing_a_deep_module_reruns_the_stages_that_import_it(tmp_path):
    copy = RepoCopy(tmp_path)
    work = tmp_path / "cnn" / "small_cnn.fold0"
    work.mkdir(parents=True)
    before = copy.fingerprint(work)
    (work / "ckpt_epoch001.keras").write_bytes(b"a checkpoint of the old code")
    assert copy.fingerprint(work) == before and (work / "ckpt_epoch001.keras").exists()

    # pipeline/models/weights/ is reached only through backbones' "pipeline.models.weights:..." builders
    copy.all_up_to_date()
    copy.edit("pipeline/models/weights/plans.py")
    plan = copy.planned()
    # (augment too: its garment segmenter runs a MobileNetV2 encoder built through them)
    # (embed_cnn too: it rebuilds each fold's network to embed through its checkpoint)
    expected = {"train_cnn", "embed_cnn", "embed", "frozen", "twoflow", "baseline", "similar"}
    assert expected | {"augment"} <= plan
    assert not {"demo_data", "folds"} & plan, plan
    # ... and a resumed fold job refuses the checkpoints the old code made
    assert copy.fingerprint(work) != before
    assert not (work / "ckpt_epoch001.keras").exists()

    # editing the CNN embedding code re-embeds the folds' checkpoints and re-runs what reads
    # the embedding files, but trains nothing and keeps the checkpoints
    copy.all_up_to_date()
    before = copy.fingerprint(work)
    (work / "ckpt_epoch001.keras").write_bytes(b"a checkpoint of the current code")
    copy.edit("pipeline/models/cnn_embed.py")
    consumers = {"embed_cnn", "twoflow", "baseline", "similar"}
    assert copy.planned() == consumers | {"stack", "thresholds", "submit", "report"}
    assert copy.fingerprint(work) == before and (work / "ckpt_epoch001.keras").exists()

    copy.all_up_to_date()
    copy.edit("pipeline/ensemble/thresholds.py")
    assert copy.planned() == {"stack", "thresholds", "submit", "report"}


def test_data_edits_rerun_what_reads_them(tmp_path):
    """The data's digest files stand for the user's files in the graph: an edited truth
    file re-scores (similar, report) and nothing else; a replaced test image re-runs
    everything that reads the test set, not the folds; a touched file re-runs nothing."""
    copy = RepoCopy(tmp_path)
    demo = tmp_path / "demo"
    (demo / "train" / "images").mkdir()
    (demo / "test" / "images").mkdir()
    (demo / "train" / "images" / "a b.png").write_bytes(b"pixels a")
    (demo / "test" / "images" / "t:1.png").write_bytes(b"pixels t")
    (demo / "test_truth.csv").write_text("image,x\nt:1.png,1\n")
    copy.all_up_to_date()
    (demo / "test_truth.csv").write_text("image,x\nt:1.png,0\n")
    assert copy.planned() == {"similar", "report"}

    copy.all_up_to_date()
    os.utime(demo / "test" / "images" / "t:1.png")
    assert copy.make("-q", "all").returncode == 0
    (demo / "test" / "images" / "t:1.png").write_bytes(b"pixels u")
    plan = copy.planned()
    assert {"data_checks", "image_cache", "train_cnn", "embed", "submit", "report"} <= plan
    assert not {"folds", "augment", "demo_data"} & plan, plan

    copy.all_up_to_date()
    (demo / "train" / "images" / "a b.png").write_bytes(b"pixels b")
    assert {"folds", "data_checks", "train_cnn"} <= copy.planned()
