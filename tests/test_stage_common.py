"""stages.common: TensorFlow's start-up noise is dropped, everything else is kept."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stages.common import STAGE_TIMES_ENV, TF_STARTUP_NOISE, cli

ROOT = Path(__file__).resolve().parents[1]

# what a CPU-only machine printed before every TensorFlow stage (TF 2.21)
NOISE = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796181337.929610   21798 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1796181337.930340   21798 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
E0000 00:00:1796181345.992580   21798 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
"""  # noqa: E501


def test_every_startup_line_is_known_noise_and_errors_are_not():
    def noise(line: str) -> bool:
        return any(n in line for n in TF_STARTUP_NOISE)

    assert all(noise(line) for line in NOISE.splitlines())
    assert not noise("Traceback (most recent call last):")
    assert not noise("ImportError: libtensorflow_framework.so.2: cannot open shared object file")


@pytest.mark.slow  # a real TensorFlow import in a fresh process
def test_a_tensorflow_stage_starts_quietly(tmp_path):
    """A real import in a fresh process: stderr holds the stage's own line, not the probe."""
    code = (
        "import logging, sys\n"
        "from stages.common import cli\n"
        "def body():\n"
        "    import tensorflow as tf\n"
        "    tf.constant(1.0) + 1.0\n"
        "    logging.getLogger('stage').info('one line')\n"
        "sys.exit(cli(body, tensorflow=True))\n"
    )
    times = tmp_path / "stages.jsonl"
    env = {"PATH": "/usr/bin:/bin", STAGE_TIMES_ENV: str(times), "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip().endswith("INFO stage: one line"), run.stderr
    assert "cuInit" not in run.stderr and "oneDNN" not in run.stderr and "absl" not in run.stderr
    (record,) = [json.loads(line) for line in times.read_text().splitlines()]
    assert record["end"] >= record["start"]


def test_stage_errors_still_one_line(capsys):
    def body():
        raise ValueError("data/x.csv row 3: bad value; fix the cell")

    assert cli(body) == 2
    assert capsys.readouterr().err == "error: data/x.csv row 3: bad value; fix the cell\n"
