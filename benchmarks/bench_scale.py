"""Benchmark: the second level at competition scale (JD size), locally and on a Dask cluster.

    python -m benchmarks.bench_scale --out build/bench/scale.json            # 5k, 20k, 55k
    python -m benchmarks.bench_scale --sizes 5000 --out /tmp/s.json          # one size

For each n_train (n_test = n_train / 5.5, 13 labels, 16 members x 8 epochs = 128 columns,
5 folds) :mod:`benchmarks.scale_data` writes prediction files in the project's format, and
the real stage commands run on them in fresh processes, as Make runs them: ``load`` and
``select`` (timed alone: the fold files into the OOF/test cubes, the per-label column
selection), then ``stages.stack`` -> ``stages.thresholds`` -> ``stages.submit`` ->
``stages.report``. Each stage's wall time and peak RSS (the whole process tree, sampled
every 0.2 s, so joblib workers count) are recorded; growth exponents are fitted over the
sizes (log time vs log n).

The second level is the one a competitor would run at this size (``SCALE_STACK``): every
combiner, nested CV, and the XGBoost stacker over the JD grid (4 eta x 9 max_depth x 5
min_child_weight = 180 points) with the successive-halving search.

``--cluster-sizes``: the stack stage again through a real 2-worker local cluster
(``dask scheduler`` + 2 ``dask worker``, one thread each); the run fails unless its
stacked arrays equal the local ones exactly. ``--speedup-sizes``: also the stack stage with
one local process (``n_jobs = 1``): ``cluster_speedup`` = that / the 2-worker cluster's.

``--netns-sizes``: the stack stage also over ``scripts/netns-cluster.sh`` (3 network
namespaces on a private bridge: scheduler host + 2 worker hosts, real TCP between
addresses; needs root); its time includes the cluster's start-up.

``--agreement``: on a subset where the exhaustive grid is affordable (4,000 rows, 13 labels,
a 36-point grid), the halving search against the exhaustive grid: the share of labels whose
halving choice has an exhaustive CV F2 within 0.002 of the exhaustive best
(``halving_agreement``). ``--full-grid-estimate``: times a sample of exhaustive grid points
on the largest size's real selected features and extrapolates the whole 180-point grid
inside the nested CV (``full_grid_estimate_s``, one core; halved for two).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.scale_data import SCALE_STACK, ScaleSpec, generate, jd_prevalences
from pipeline.artifacts import load_metrics, write_json_atomic

log = logging.getLogger("benchmarks.bench_scale")

ROOT = Path(__file__).resolve().parent.parent
SIZES = (5000, 20000, 54908)
STAGES = ("load", "select", "stack", "thresholds", "submit", "report")


def _toml(value) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def write_config(path: Path, info: dict, stack: dict) -> Path:
    """A config for the synthetic run: its data, one nominal backbone, the stack section."""
    lines = [
        f'name = "scale_{path.parent.name}"',
        "[data]",
        f'train_dir = "{info["train_dir"]}"',
        f'test_dir = "{info["test_dir"]}"',
        f'test_truth = "{info["test_truth"]}"',
        "[train]",
        "[[train.backbones]]",
        'name = "small_cnn"',
        "epochs = 1",
        "[stack]",
        *(f"{k} = {_toml(v)}" for k, v in stack.items()),
        "[thresholds]",
        "beta = 2.0",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _tree_usage(pid: int, cpu: dict[int, float]) -> int:
    """The RSS (bytes) of ``pid``'s process tree now; records each process's CPU seconds
    so far (user + system) in ``cpu``, by pid."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
            t = p.cpu_times()
            cpu[p.pid] = max(cpu.get(p.pid, 0.0), t.user + t.system)
        except psutil.NoSuchProcess:
            pass
    return total


def timed(cmd: list[str], env: dict | None = None, log_file: Path | None = None) -> dict:
    """Run ``cmd``; its wall seconds, the peak RSS (MB) and the CPU seconds of its process
    tree, and the load average while it ran.

    CPU seconds say what a stage costs when the machine is shared (wall time then also
    counts other programs' turns): the larger of the reaped children's rusage and the sum
    of every sampled process's own times (a pool worker that is never reaped is only seen
    by sampling).
    """
    import resource

    out = open(log_file, "w") if log_file else subprocess.DEVNULL  # noqa: SIM115
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    peak, cpu, loads = [0], {}, []

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_usage(proc.pid, cpu))
            loads.append(os.getloadavg()[0])
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc = proc.wait()
    seconds = time.perf_counter() - t0
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if log_file:
        out.close()
    if rc != 0:
        tail = log_file.read_text()[-3000:] if log_file else ""
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({rc}):\n{tail}")
    return {
        "s": round(seconds, 2),
        "peak_mb": round(peak[0] / 2**20, 1),
        "cpu_s": round(max(reaped, sum(cpu.values())), 1),
        "load_avg": round(float(np.mean(loads)), 1) if loads else None,
    }


def step_main(argv: list[str]) -> int:
    """``python -m benchmarks.bench_scale step load|select CONFIG PREDS...``: time one
    in-library step in this fresh process; prints its seconds as JSON."""
    from pipeline.config.schema import load_config
    from pipeline.data.contract import read_labels
    from pipeline.ensemble.select import group_pred_files, load_base_predictions, select_columns

    what, config, *preds = argv
    cfg = load_config(config)
    t0 = time.perf_counter()
    table = read_labels(cfg.data.train_dir, cfg.data.id_column, check_images=False)
    base = load_base_predictions(group_pred_files(preds), table.ids)
    seconds = time.perf_counter() - t0
    if what == "select":
        t0 = time.perf_counter()
        s = cfg.stack
        select_columns(base.oof, table.y, base.columns, cfg.thresholds.beta, s.top_n,
                       s.corr_threshold, cfg.thresholds.step)  # fmt: skip
        seconds = time.perf_counter() - t0
    print(json.dumps({"s": seconds}))
    return 0


def run_size(
    n: int,
    work: Path,
    cluster_address: str | None,
    serial: bool,
    netns: bool = False,
    on_update=lambda record: None,
) -> dict:
    """Generate one size and run every stage on it; the per-stage records.
    ``on_update(record)`` is called after the local stages and after each extra stack run,
    so a run stopped later keeps what it measured."""
    spec = ScaleSpec(n_train=n)
    base = work / f"n{n}"
    stamp = base / "spec.json"
    if not (stamp.is_file() and json.loads(stamp.read_text()) == spec.__dict__):
        t0 = time.perf_counter()
        base.mkdir(parents=True, exist_ok=True)
        info = generate(spec, base)
        stamp.write_text(json.dumps(spec.__dict__))
        log.info("n=%d: generated in %.1f s", n, time.perf_counter() - t0)
    info = {
        "train_dir": base / "data" / "train",
        "test_dir": base / "data" / "test",
        "test_truth": base / "data" / "test_truth.csv",
    }
    preds = sorted(str(p) for p in (base / "preds").glob("*.npz"))
    py = sys.executable
    cfg = write_config(base / "config.toml", info, SCALE_STACK)
    out = base / "out"
    out.mkdir(exist_ok=True)
    stacked, thresholds = out / "stack" / "stacked.npz", out / "thresholds.json"
    submission = out / "submission.csv"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    env.pop("DASK_SCHEDULER", None)

    def stack_cmd(out: Path, config: Path = cfg) -> list[str]:
        out.parent.mkdir(parents=True, exist_ok=True)
        return [py, "-m", "stages.stack", "--config", str(config), "--preds", *preds,
                "--out", str(out)]  # fmt: skip

    cmds = {
        "load": [py, "-m", "benchmarks.bench_scale", "step", "load", str(cfg), *preds],
        "select": [py, "-m", "benchmarks.bench_scale", "step", "select", str(cfg), *preds],
        "stack": stack_cmd(stacked),
        "thresholds": [py, "-m", "stages.thresholds", "--config", str(cfg), "--stacked",
                       str(stacked), "--out", str(thresholds)],
        "submit": [py, "-m", "stages.submit", "--config", str(cfg), "--stacked", str(stacked),
                   "--thresholds", str(thresholds), "--out", str(submission),
                   "--out-labels", str(out / "submission.labels.csv")],
        "report": [py, "-m", "stages.report", "--config", str(cfg),
                   "--stacked", str(stacked),
                   "--thresholds", str(thresholds), "--submission", str(submission),
                   "--out-dir", str(out / "report")],
    }  # fmt: skip
    record: dict = {"n_train": n, "n_test": spec.test_rows, "stages": {}}
    for stage in STAGES:
        rec = timed(cmds[stage], env, out / f"{stage}.log")
        if stage in ("load", "select"):  # the step's own time, without interpreter start-up
            lines = (out / f"{stage}.log").read_text().strip().splitlines()
            rec["s"] = round(json.loads(lines[-1])["s"], 2)
        record["stages"][stage] = rec
        log.info("n=%d %-10s %8.1f s  %7.0f MB  cpu %.0f s  load %s", n, stage, rec["s"],
                 rec["peak_mb"], rec["cpu_s"], rec["load_avg"])  # fmt: skip
    metrics = load_metrics(out / "report" / "metrics.json")
    record["vote_test_fbeta"] = metrics["models"]["vote"].get("test_fbeta_macro")
    record["total_s"] = round(sum(r["s"] for r in record["stages"].values()), 1)
    record["peak_mb"] = max(r["peak_mb"] for r in record["stages"].values())
    on_update(record)

    def rerun(key: str, what: str, out: Path, cmd: list[str], extra_env: dict, same: bool):
        """The stack stage once more (into ``out``), timed; ``same``: its arrays must equal
        the local run's."""
        rec = timed(cmd, {**env, **extra_env}, out.parent / "stack.log")
        if same:
            rec["identical"] = _same_arrays(stacked, out)
            if not rec["identical"]:
                raise RuntimeError(f"{out} differs from the local {stacked}")
        record[key] = rec
        log.info("n=%d stack %s %.1f s%s", n, what, rec["s"], " (identical arrays)" * same)
        on_update(record)

    if cluster_address:
        out_c = base / "out_cluster" / "stacked.npz"
        rerun("cluster_stack", "on the 2-worker cluster", out_c, stack_cmd(out_c),
              {"DASK_SCHEDULER": cluster_address}, same=True)  # fmt: skip
    if netns:  # the stack stage on 3 "hosts" (network namespaces): scheduler + 2 workers
        out_n = base / "out_netns" / "stacked.npz"
        shell = [str(ROOT / "scripts" / "netns-cluster.sh"), "bash", "-c",
                 " ".join(stack_cmd(out_n))]  # fmt: skip
        rerun("netns_stack", "on 3 netns hosts", out_n, shell,
              {"PY": py, "NETNS_DIR": str(out_n.parent / "logs")}, same=True)  # fmt: skip
    if serial:
        s_cfg = write_config(base / "config_serial.toml", info, {**SCALE_STACK, "n_jobs": 1})
        out_s = base / "out_serial" / "stacked.npz"
        rerun("serial_stack", "with one process", out_s, stack_cmd(out_s, s_cfg), {}, same=False)
    return record


def _same_arrays(a: Path, b: Path) -> bool:
    """Every array of two .npz files equal, bytes and dtype (np.savez stamps the zip
    members with the time, so the files' bytes differ even when the arrays do not)."""
    with np.load(a) as x, np.load(b) as y:
        return sorted(x.files) == sorted(y.files) and all(
            x[k].dtype == y[k].dtype and x[k].tobytes() == y[k].tobytes() for k in x.files
        )


def growth(sizes: list[int], seconds: list[float]) -> float | None:
    """The exponent b of seconds ~ n^b, least squares on the log-log points."""
    if len(sizes) < 2 or min(seconds) <= 0:
        return None
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def summarise(result: dict) -> dict:
    """The cross-size summary (per-stage table, growth exponents, 55k totals, speed-up)."""
    recs = result["sizes"]
    result["stages"] = {stage: {n: recs[n]["stages"][stage] for n in recs} for stage in STAGES}
    result["growth_exponent"] = {
        stage: growth([int(n) for n in recs], [recs[n]["stages"][stage]["s"] for n in recs])
        for stage in STAGES
    }
    big = recs.get(str(max(SIZES)))
    result["total_s_55k"] = big.get("total_s") if big else None
    result["peak_mb_55k"] = big.get("peak_mb") if big else None
    speed = [
        recs[n]["serial_stack"]["s"] / recs[n]["cluster_stack"]["s"]
        for n in recs
        if "serial_stack" in recs[n] and "cluster_stack" in recs[n]
    ]
    result["cluster_speedup"] = round(speed[-1], 2) if speed else None
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "step":
        return step_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    ap.add_argument(
        "--resume",
        action="store_true",
        help="keep the sizes (and checks) already in --out; run only the rest",
    )
    ap.add_argument(
        "--cluster-sizes",
        type=int,
        nargs="*",
        default=None,
        help="sizes whose stack stage also runs on a 2-worker cluster (default: all)",
    )
    ap.add_argument(
        "--speedup-sizes",
        type=int,
        nargs="*",
        default=None,
        help="sizes whose stack stage also runs with n_jobs=1 (default: the smallest)",
    )
    ap.add_argument(
        "--netns-sizes",
        type=int,
        nargs="*",
        default=[],
        help="sizes whose stack stage also runs over scripts/netns-cluster.sh (root)",
    )
    ap.add_argument("--agreement", action="store_true")
    ap.add_argument("--full-grid-estimate", action="store_true")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench" / "scale")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "scale.json")
    args = ap.parse_args(argv)  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sizes = sorted(args.sizes)
    cluster_sizes = sizes if args.cluster_sizes is None else args.cluster_sizes
    speedup_sizes = sizes[:1] if args.speedup_sizes is None else args.speedup_sizes
    result: dict = {
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "prevalence": [round(float(p), 5) for p in jd_prevalences()],
        "stack_config": SCALE_STACK,
        "sizes": {},
    }
    if args.resume and args.out.is_file():
        old = json.loads(args.out.read_text())
        if old.get("stack_config") != SCALE_STACK:
            raise ValueError(f"{args.out} was made with another stack config; drop --resume")
        result = {**old, **{k: result[k] for k in ("machine", "prevalence", "stack_config")}}
        sizes = [n for n in sizes if str(n) not in result["sizes"]]
    cluster = None
    try:
        if any(n in cluster_sizes for n in sizes):
            from pipeline.cluster import free_port, start_cluster

            cluster = start_cluster(args.work / "cluster", 2, 1, port=free_port())
        for n in sizes:
            address = cluster.address if cluster and n in cluster_sizes else None

            def update(record, n=n):  # partial results survive a kill
                result["sizes"][str(n)] = record
                write_json_atomic(args.out, summarise(result))

            run_size(n, args.work, address, n in speedup_sizes, n in args.netns_sizes, update)
    finally:
        if cluster:
            from pipeline.cluster import stop_cluster

            stop_cluster(cluster.directory)
    if args.agreement:
        from benchmarks.scale_checks import agreement

        result["agreement"] = agreement()
        result["halving_agreement"] = result["agreement"]["halving_agreement"]
        write_json_atomic(args.out, summarise(result))
    if args.full_grid_estimate:
        n_max = max(map(int, result["sizes"]))
        from benchmarks.scale_checks import full_grid_estimate

        result["full_grid"] = full_grid_estimate(args.work / f"n{n_max}")
        result["full_grid_estimate_s"] = result["full_grid"]["full_grid_estimate_s"]
    result = summarise(result)
    write_json_atomic(args.out, result)
    if not result["sizes"]:
        return 0
    n_max = max(map(int, result["sizes"]))
    largest = result["sizes"][str(n_max)]
    print(
        f"scale: n={n_max} second level {largest['total_s']:.0f} s, peak "
        f"{largest['peak_mb']:.0f} MB; stack growth n^{result['growth_exponent']['stack'] or 0:.2f}; "
        f"cluster speed-up {result['cluster_speedup']}; halving agreement "
        f"{result.get('halving_agreement')}; full grid ~{result.get('full_grid_estimate_s')} s"
        f" -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
