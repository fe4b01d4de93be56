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
    POST /api/predict_batch   several images in one request (repeated ``image`` files and/or
                              ``test_id`` values): ``{"results": [...]}``, one per image
    GET  /image/{split}/{id}  a train or test image of the run, by id
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures below at
# definition time, and their types are imported inside create_app
import contextlib
import html
import json
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import numpy as np

from pipeline.config.schema import Config

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: Most pixels an upload may have (8,000 x 8,000; a 48-MP phone photo fits), checked from
#: its header before the decode: a 1-KB PNG may declare 30000 x 30000 pixels (2.7 GB).
MAX_PIXELS = 64_000_000
#: Requests decoding or predicting at once; the rest wait up to :data:`BUSY_WAIT_S` and are
#: then answered 503, so a burst of large uploads cannot pile decoded images up in memory
#: (each holds up to 3 x MAX_PIXELS bytes; predictions run one at a time anyway).
MAX_DECODES = 2
BUSY_WAIT_S = 30.0
N_SIMILAR = 10


class BadUpload(ValueError):
    """An upload we refuse, with the message the page shows."""


class Busy(RuntimeError):
    """Every decode slot stayed taken for ``BUSY_WAIT_S``: answered 503, retry later."""


def check_upload(data: bytes, filename: str, max_bytes: int = MAX_UPLOAD_BYTES) -> np.ndarray:
    """Decode an uploaded file once, as ``pipeline.runtime.images.load_image`` decodes a file (uint8
    RGB, EXIF-upright), or raise :class:`BadUpload` saying what is wrong with it. Every
    model input is resized from this one array. The pixel count is checked from the header
    first (:func:`pipeline.runtime.images.check_pixels`), so a decompression bomb is refused in
    milliseconds without allocating its pixels."""
    from pipeline.runtime.images import IMAGE_EXTENSIONS, check_pixels, load_image

    name = filename or "the upload"
    if not data:
        raise BadUpload(f"{name} is empty: choose an image file (JPEG, PNG, ...)")
    if len(data) > max_bytes:
        raise BadUpload(
            f"{name} is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB. "
            "Upload a smaller image."
        )
    try:
        check_pixels(data, MAX_PIXELS, name, "upload a smaller image")
    except ValueError as exc:
        raise BadUpload(str(exc)) from None
    suffix = Path(filename or "").suffix.lower()
    with tempfile.TemporaryDirectory() as tmp:
        # the file decoder (not cv2.imdecode) so EXIF orientation and 16-bit/grey/alpha
        # handling are exactly the pipeline's
        path = Path(tmp) / f"upload{suffix if suffix in IMAGE_EXTENSIONS else '.img'}"
        path.write_bytes(data)
        try:
            img = load_image(path)
        except ValueError:
            raise BadUpload(
                f"{name} is not an image this page can read (JPEG, PNG, GIF, BMP, WebP, "
                "TIFF, ...); upload a photo instead"
            ) from None
    if img.shape[0] * img.shape[1] > MAX_PIXELS:  # a header Pillow could not read
        raise BadUpload(
            f"{name} is {img.shape[1]}x{img.shape[0]} pixels; the limit is "
            f"{MAX_PIXELS / 1e6:.0f} megapixels"
        )
    return img


class Service:
    """A run's predictor, similarity index and metrics, loaded once.

    Predictions come from the run's export (``make export``, ``pipeline.runtime.exported``: ONNX
    Runtime networks, NumPy second level), warmed up at start, so a
    request only runs them; one lock serialises requests (two cores gain nothing from
    running two at once, and a request's answer never depends on another's).
    """

    def __init__(self, cfg: Config, build_dir: str | Path):
        from pipeline.artifacts import load_metrics
        from pipeline.data.contract import image_paths, read_labels, read_test_ids, read_test_truth
        from pipeline.runtime.exported import load
        from pipeline.similar import SimilarityIndex

        self.cfg = cfg
        self.build = Path(build_dir)
        self.predictor = load(self.build / "export")
        self.index = SimilarityIndex.load(self.build / "similar" / "index.npz")
        self._check_export_index()
        metrics_path = self.build / "report" / "metrics.json"
        self.metrics = load_metrics(metrics_path) if metrics_path.is_file() else None
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
        self.slots = threading.BoundedSemaphore(MAX_DECODES)
        if self.train_paths:
            from pipeline.runtime.exported import decode

            first = decode(next(iter(self.train_paths.values())))
            self.predictor.warm_up(first)
            self.similar([first])

    def similar(self, images: list[np.ndarray], k: int = N_SIMILAR) -> list[list[dict]]:
        """The ``k`` most similar training images of each decoded image."""
        from pipeline.models.inference import decoded_pixels
        from pipeline.similar import l2_normalise

        idx = self.index
        if idx.kind == "pixels":
            q = decoded_pixels(images, idx.pixel_size)
        else:
            q = self.predictor.similar_embedding(images)
        rows, scores = idx.search(l2_normalise(q), k)
        return [
            [
                {
                    "id": str(idx.ids[i]),
                    "score": float(s),
                    "labels": [lab for lab, v in zip(idx.labels, idx.y[i], strict=True) if v == 1],
                }
                for i, s in zip(rows_i, scores_i, strict=True)
            ]
            for rows_i, scores_i in zip(rows, scores, strict=True)
        ]

    def _check_export_index(self) -> None:
        """The export's similarity network must be the one the index was embedded with."""
        import hashlib

        if self.index.kind != "model":
            return
        spec = self.predictor.manifest.get("similar") or {}
        path = self.build / "similar" / "index.npz"
        if spec.get("index_sha256") != hashlib.sha256(path.read_bytes()).hexdigest():
            raise ValueError(
                f"{self.build / 'export'} was exported before {path} was rebuilt; "
                "run `make export CONFIG=...`"
            )

    @contextlib.contextmanager
    def slot(self, wait_s: float = BUSY_WAIT_S) -> Iterator[None]:
        """Hold one of the :data:`MAX_DECODES` slots while a request decodes and predicts;
        :class:`Busy` when none frees within ``wait_s``."""
        if not self.slots.acquire(timeout=wait_s):
            raise Busy(f"the page is busy ({MAX_DECODES} requests decoding); try again in a moment")
        try:
            yield
        finally:
            self.slots.release()

    def predict_many(self, images: list[np.ndarray], model: str) -> list[dict]:
        """Decoded images -> one result per image (``Prediction.as_dict`` + ``similar``)."""
        with self.lock:
            preds = self.predictor.predict(images, model)
            sims = self.similar(images)
        return [{**p.as_dict(), "similar": s} for p, s in zip(preds, sims, strict=True)]

    def predict(self, image: str | Path | np.ndarray, model: str) -> dict:
        """One image (a file or a decoded array) -> its result."""
        from pipeline.runtime.exported import decode

        return self.predict_many([decode(image)], model)[0]


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
    note = (
        "<p>No test labels: these are out-of-fold scores; held-out scores need "
        "<code>data.test_truth</code>.</p>"
        if split == "oof"
        else ""
    )
    return (
        f"<h2>Per-label metrics ({'held-out test' if split == 'test' else 'out-of-fold'})</h2>"
        f"{note}<table id='metrics'><tr><th>label</th><th>prevalence</th><th>threshold</th>"
        f"{head}</tr>{''.join(rows)}<tr><th>macro</th><td></td><td></td>{macro}</tr></table>"
        + data_checks_html(m.get("data_checks"))
    )


#: The page's names for the data report's counts (metrics.json ``data_checks``).
DATA_CHECK_ROWS = {
    "test_near_copies_of_train": "test images that copy a training image (exact pixels or near)",
    "test_mirrored_copies_of_train": "... of them mirrored",
    "train_copy_groups": "training copy groups (each in one fold)",
    "groups_with_conflicting_labels": "copy groups with conflicting labels",
}


def data_checks_html(checks: dict | None) -> str:
    """The run's data checks (`make data-checks`, made again whenever the test list
    changes): the leaks a user should know of before trusting the page's test scores."""
    if not checks:
        return ""
    rows = "".join(
        f"<tr><td>{_e(text)}</td><td>{int(checks[key])}</td></tr>"
        for key, text in DATA_CHECK_ROWS.items()
        if key in checks
    )
    return f"<h2>Data checks</h2><table id='data-checks'>{rows}</table>"


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

    def _upload(image: UploadFile) -> np.ndarray:
        return check_upload(image.file.read(max_upload_bytes + 1), image.filename, max_upload_bytes)

    def _test_image(test_id: str) -> np.ndarray:
        from pipeline.runtime.exported import decode

        if test_id not in svc.test_paths:
            raise BadUpload(f"{test_id!r} is not a test image of this run")
        return decode(svc.test_paths[test_id])

    def _resolve(image: UploadFile | None, test_id: str) -> tuple[np.ndarray, str, str]:
        """(decoded image, how to describe it, test id or "") from the form's two inputs."""
        if image is not None and image.filename:
            return _upload(image), f"uploaded <b>{_e(image.filename)}</b>", ""
        if test_id:
            img = f"<img src='/image/test/{_e(test_id)}' width='128'>"
            return _test_image(test_id), f"test image <b>{_e(test_id)}</b><br>{img}", test_id
        raise BadUpload("choose an image file to upload, or pick a test image")

    def _truth(test_id: str) -> list[str] | None:
        if not test_id or svc.truth is None or test_id not in svc.truth.index:
            return None
        row = svc.truth.loc[test_id]
        return [lab for lab in svc.predictor.labels if row.get(lab) == 1]

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page(title, form_html(svc) + metrics_html(svc))

    def _check_model(model: str) -> None:
        if model not in svc.predictor.model_names:
            raise BadUpload(f"unknown model {model!r}")
        try:
            svc.predictor.check_scorable(model)
        except ValueError as exc:  # an [[external]] member: no model here
            raise BadUpload(str(exc)) from None

    def _answer(image, test_id: str, model: str) -> tuple[dict, str, str]:
        """(result, how the image is described, test id), :class:`BadUpload` or :class:`Busy`."""
        _check_model(model)
        with svc.slot():
            decoded, shown, tid = _resolve(image, test_id)
            return svc.predict_many([decoded], model)[0], shown, tid

    def _busy(exc: Busy, html_page: bool = False):
        headers = {"Retry-After": "5"}
        if html_page:
            body = f"<div class='error' id='error'>{_e(exc)}</div>"
            return HTMLResponse(page(title, body), status_code=503, headers=headers)
        return JSONResponse({"error": str(exc)}, status_code=503, headers=headers)

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
        except Busy as exc:
            return _busy(exc, html_page=True)
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
        except Busy as exc:
            return _busy(exc)

    @app.post("/api/predict_batch")
    def api_predict_batch(
        image: Annotated[list[UploadFile] | None, File()] = None,
        test_id: Annotated[list[str] | None, Form()] = None,
        model: Annotated[str, Form()] = "ensemble",
    ):
        """Several images in one request (repeat ``image`` and/or ``test_id``): one result
        per image, uploads first, in order; one bad image refuses the whole request."""
        try:
            _check_model(model)
            uploads = [u for u in image or [] if u.filename]
            names = [u.filename for u in uploads] + [t for t in test_id or [] if t]
            if not names:
                raise BadUpload("send one or more `image` files or `test_id` values")
            with svc.slot():
                decoded = [_upload(u) for u in uploads]
                decoded += [_test_image(t) for t in test_id or [] if t]
                results = svc.predict_many(decoded, model)
        except BadUpload as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Busy as exc:
            return _busy(exc)
        return {"results": [{"image": n, **r} for n, r in zip(names, results, strict=True)]}

    @app.get("/image/{split}/{image_id}")
    def image_file(split: str, image_id: str):
        table = {"train": svc.train_paths, "test": svc.test_paths}.get(split)
        if table is None or image_id not in table:
            raise HTTPException(status_code=404, detail="no such image in this run")
        return FileResponse(table[image_id])

    app.state.service = svc
    return app


def post_images(
    url: str,
    images: list[tuple[str, bytes]],
    model: str = "ensemble",
    timeout: float = 60.0,
) -> dict:
    """A standard-library client of the page's JSON API (scripts, tests, the benchmark).

    One image goes to ``/api/predict`` (its result), several to ``/api/predict_batch``
    (``{"results": [...]}``); a 4xx answer raises ``urllib.error.HTTPError``.

    Args:
        url: the page, e.g. ``http://127.0.0.1:8000``.
        images: (file name, file bytes) per image.
    """
    import urllib.request
    import uuid

    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'.encode()
    ]
    for name, data in images:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts += [head.encode(), data, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    route = "/api/predict" if len(images) == 1 else "/api/predict_batch"
    req = urllib.request.Request(
        url.rstrip("/") + route,
        data=b"".join(parts),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())
