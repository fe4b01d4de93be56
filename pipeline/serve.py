"""`make serve`: a small local web page over a finished run.

FastAPI + server-rendered HTML (no JavaScript, no front-end build): one process, three
small dependencies, pages a real browser can drive and a test can read. Streamlit and
Gradio would add large dependency trees and render through websockets, which makes the
page harder to test and slower to start for what is one form and three tables.

Routes:
    GET  /                    the form (upload or pick a test image, choose a model) and
                              the per-label metrics table of the run
    POST /predict             the form's target: labels, probabilities vs thresholds, the
                              10 most similar training images (or a clear error)
    POST /api/predict         the same as JSON (``Prediction.as_dict`` + ``similar``)
    GET  /image/{split}/{id}  a train or test image of the run, by id
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures below at
# definition time, and their types are imported inside create_app
import html
import json
import tempfile
import threading
from pathlib import Path
from typing import Annotated

import numpy as np

from pipeline.config import Config

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000
N_SIMILAR = 10
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class BadUpload(ValueError):
    """An upload we refuse, with the message the page shows."""


def check_upload(data: bytes, filename: str, max_bytes: int = MAX_UPLOAD_BYTES) -> np.ndarray:
    """Decode an uploaded file or raise :class:`BadUpload` saying what is wrong with it."""
    import cv2

    name = filename or "the upload"
    if not data:
        raise BadUpload(f"{name} is empty: choose an image file (JPEG, PNG, ...)")
    if len(data) > max_bytes:
        raise BadUpload(
            f"{name} is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB. "
            "Upload a smaller image."
        )
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise BadUpload(
            f"{name} is not an image this page can read (JPEG, PNG, BMP, WebP or TIFF); "
            "upload a photo instead"
        )
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise BadUpload(
            f"{name} is {img.shape[1]}x{img.shape[0]} pixels; the limit is "
            f"{MAX_PIXELS / 1e6:.0f} megapixels"
        )
    return img


class Service:
    """A run's predictor, similarity index and metrics, loaded once; not thread-safe alone,
    so every call goes through one lock (the predictor swaps weights in shared models)."""

    def __init__(self, cfg: Config, build_dir: str | Path):
        from pipeline.data import image_paths, read_labels, read_test_ids, read_test_truth
        from pipeline.predict import Predictor
        from pipeline.similar import SimilarityIndex

        self.cfg = cfg
        self.build = Path(build_dir)
        self.predictor = Predictor(cfg, self.build)
        self.index = SimilarityIndex.load(self.build / "similar" / "index.npz")
        self._sim_model = None
        metrics_path = self.build / "report" / "metrics.json"
        self.metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
        train = read_labels(cfg.data.train_dir, cfg.data.id_column, check_images=False)
        self.train_paths = dict(zip(map(str, train.ids), train.paths(), strict=True))
        self.test_paths = {}
        if cfg.data.test_dir:
            ids, test_dir = read_test_ids(cfg.data.test_dir, cfg.data.id_column, False)
            self.test_paths = dict(zip(map(str, ids), image_paths(ids, test_dir), strict=True))
        self.truth = None
        if cfg.data.test_truth and Path(cfg.data.test_truth).is_file():
            self.truth = read_test_truth(
                cfg.data.test_truth, self.predictor.labels, cfg.data.id_column
            )
        self.lock = threading.Lock()
        if self.train_paths:
            self.predictor.warm_up(next(iter(self.train_paths.values())))
            self.similar(next(iter(self.train_paths.values())))

    def similar(self, path: Path, k: int = N_SIMILAR) -> list[dict]:
        from pipeline.inference import load_checkpoint

        if self.index.kind == "model" and self._sim_model is None:
            self._sim_model = load_checkpoint(self.index.model_path)
        q = self.index.embed([path], batch=2, model=self._sim_model)
        idx, scores = self.index.search(q, k)
        out = []
        for i, s in zip(idx[0], scores[0], strict=True):
            y = self.index.y[i]
            out.append(
                {
                    "id": str(self.index.ids[i]),
                    "score": float(s),
                    "labels": [lab for lab, v in zip(self.index.labels, y, strict=True) if v == 1],
                }
            )
        return out

    def predict(self, path: Path, model: str) -> dict:
        with self.lock:
            pred = self.predictor.predict([path], model)[0]
            return {**pred.as_dict(), "similar": self.similar(path)}


# ---- HTML ------------------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em}
th{background:#f2f2f2}.yes{background:#d9f2d9;font-weight:bold}
.error{background:#fde2e1;border:1px solid #d33;padding:1em;margin:1em 0}
.sim{display:inline-block;margin:.3em;text-align:center;font-size:80%;width:9em;
vertical-align:top}.sim img{width:96px;height:96px;object-fit:cover}
.bar{background:#4a7;height:.8em;display:inline-block}
"""


def _e(x) -> str:
    return html.escape(str(x))


def page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1>{body}</body></html>"
    )


def form_html(svc: Service, chosen_model: str = "ensemble", chosen_test: str = "") -> str:
    models = "".join(
        f"<option value='{_e(m)}'{' selected' if m == chosen_model else ''}>{_e(m)}</option>"
        for m in svc.predictor.model_names
    )
    tests = "<option value=''>(upload instead)</option>" + "".join(
        f"<option value='{_e(t)}'{' selected' if t == chosen_test else ''}>{_e(t)}</option>"
        for t in list(svc.test_paths)[:500]
    )
    return (
        "<form id='predict-form' action='/predict' method='post' enctype='multipart/form-data'>"
        "<p><label>Upload an image: <input type='file' id='image' name='image' "
        "accept='image/*'></label></p>"
        f"<p><label>or pick a test image: <select id='test_id' name='test_id'>{tests}"
        "</select></label></p>"
        f"<p><label>Model: <select id='model' name='model'>{models}</select></label></p>"
        "<p><button type='submit' id='submit'>Predict</button></p></form>"
    )


def metrics_html(svc: Service) -> str:
    m = svc.metrics
    if not m:
        return "<p>No report yet: run <code>make report</code>.</p>"
    names = list(m["models"])
    split = "test" if all("test_fbeta_per_label" in v for v in m["models"].values()) else "oof"
    head = "".join(f"<th>{_e(n)} F{m['beta']:g}</th>" for n in names)
    rows = []
    for lab in m["labels"]:
        cells = "".join(
            f"<td>{m['models'][n][f'{split}_fbeta_per_label'][lab]:.3f}</td>" for n in names
        )
        rows.append(
            f"<tr><td>{_e(lab)}</td><td>{m['prevalence'][lab]:.3f}</td>"
            f"<td>{m['thresholds'][lab]:.2f}</td>{cells}</tr>"
        )
    macro = "".join(f"<td>{m['models'][n][f'{split}_fbeta_macro']:.4f}</td>" for n in names)
    return (
        f"<h2>Per-label metrics ({'held-out test' if split == 'test' else 'out-of-fold'})</h2>"
        f"<table id='metrics'><tr><th>label</th><th>prevalence</th><th>threshold</th>{head}"
        f"</tr>{''.join(rows)}<tr><th>macro</th><td></td><td></td>{macro}</tr></table>"
    )


def result_html(svc: Service, result: dict, shown: str, truth: list[str] | None) -> str:
    labels = result["labels"]
    chips = "".join(f"<li>{_e(lab)}</li>" for lab in labels) or "<li>(no label)</li>"
    has_votes = any("votes" in v for v in result["scores"].values())
    rows = []
    for lab, s in result["scores"].items():
        cls = " class='yes'" if s["predicted"] else ""
        width = int(round(100 * s["probability"]))
        votes = f"<td>{s['votes']}</td>" if has_votes else ""
        rows.append(
            f"<tr{cls} data-label='{_e(lab)}'><td>{_e(lab)}</td>"
            f"<td>{s['probability']:.3f} <span class='bar' style='width:{width}px'></span></td>"
            f"<td>{s['threshold']:.2f}</td>{votes}<td>{'yes' if s['predicted'] else ''}</td></tr>"
        )
    vote_head = "<th>fold votes</th>" if has_votes else ""
    sims = "".join(
        f"<div class='sim'><img src='/image/train/{_e(s['id'])}' alt='{_e(s['id'])}'><br>"
        f"<span class='sim-id'>{_e(s['id'])}</span> ({s['score']:.3f})<br>"
        f"{_e(', '.join(s['labels']))}</div>"
        for s in result["similar"]
    )
    truth_html = (
        f"<p>True labels: <span id='truth'>{_e(' '.join(truth) or '(none)')}</span></p>"
        if truth is not None
        else ""
    )
    return (
        f"<div id='result'><h2>Prediction: {_e(result['model'])}</h2>"
        f"<p>{shown}</p><p><i>{_e(result['detail'])}</i></p>"
        f"<h3>Final labels</h3><ul id='labels'>{chips}</ul>{truth_html}"
        f"<h3>Probability vs threshold</h3><table id='scores'><tr><th>label</th>"
        f"<th>probability</th><th>threshold</th>{vote_head}<th>predicted</th></tr>"
        f"{''.join(rows)}</table>"
        f"<h3>{len(result['similar'])} most similar training images</h3>"
        f"<div id='similar'>{sims}</div></div>"
    )


def create_app(cfg: Config, build_dir: str | Path, max_upload_bytes: int = MAX_UPLOAD_BYTES):
    """The FastAPI app over one finished run."""
    from fastapi import FastAPI, File, Form, HTTPException, UploadFile
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

    svc = Service(cfg, build_dir)
    app = FastAPI(title=f"{cfg.name}: multi-label predictions")
    title = f"{cfg.name}: attribute predictions"

    def _resolve(image: UploadFile | None, test_id: str, tmp: Path) -> tuple[Path, str, str]:
        """(image file, how to describe it, test id or "") from the form's two inputs."""
        if image is not None and image.filename:
            data = image.file.read(max_upload_bytes + 1)
            check_upload(data, image.filename, max_upload_bytes)
            suffix = Path(image.filename).suffix.lower()
            path = tmp / f"upload{suffix if suffix in SUFFIXES else '.img'}"
            path.write_bytes(data)
            return path, f"uploaded <b>{_e(image.filename)}</b>", ""
        if test_id:
            if test_id not in svc.test_paths:
                raise BadUpload(f"{test_id!r} is not a test image of this run")
            path = svc.test_paths[test_id]
            img = f"<img src='/image/test/{_e(test_id)}' width='128'>"
            return path, f"test image <b>{_e(test_id)}</b><br>{img}", test_id
        raise BadUpload("choose an image file to upload, or pick a test image")

    def _truth(test_id: str) -> list[str] | None:
        if not test_id or svc.truth is None or test_id not in svc.truth.index:
            return None
        row = svc.truth.loc[test_id]
        return [lab for lab in svc.predictor.labels if row.get(lab) == 1]

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page(title, form_html(svc) + metrics_html(svc))

    def _answer(image, test_id: str, model: str) -> tuple[dict, str, str]:
        """(result, how the image is described, test id) or :class:`BadUpload`."""
        if model not in svc.predictor.model_names:
            raise BadUpload(f"unknown model {model!r}")
        with tempfile.TemporaryDirectory() as tmp:
            path, shown, tid = _resolve(image, test_id, Path(tmp))
            return svc.predict(path, model), shown, tid

    @app.post("/predict", response_class=HTMLResponse)
    def predict(
        image: Annotated[UploadFile | None, File()] = None,
        test_id: Annotated[str, Form()] = "",
        model: Annotated[str, Form()] = "ensemble",
    ):
        try:
            result, shown, tid = _answer(image, test_id, model)
        except BadUpload as exc:
            body = f"<div class='error' id='error'>{_e(exc)}</div>"
            return HTMLResponse(
                page(title, body + form_html(svc, model, test_id) + metrics_html(svc)),
                status_code=400,
            )
        body = result_html(svc, result, shown, _truth(tid))
        return page(title, form_html(svc, model, test_id) + body + metrics_html(svc))

    @app.post("/api/predict")
    def api_predict(
        image: Annotated[UploadFile | None, File()] = None,
        test_id: Annotated[str, Form()] = "",
        model: Annotated[str, Form()] = "ensemble",
    ):
        try:
            return _answer(image, test_id, model)[0]
        except BadUpload as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    @app.get("/image/{split}/{image_id}")
    def image_file(split: str, image_id: str):
        table = {"train": svc.train_paths, "test": svc.test_paths}.get(split)
        if table is None or image_id not in table:
            raise HTTPException(status_code=404, detail="no such image in this run")
        return FileResponse(table[image_id])

    app.state.service = svc
    return app
