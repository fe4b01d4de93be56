"""The README and docs/ say only what is true of the repository.

Fast and without TensorFlow: it reads the Markdown files and the Makefiles as text.

What is checked, in ``README.md`` and ``docs/*.md``:

- ``README.md`` is at most 15,000 bytes (a user guide; measurements live in docs/).
- **Paths.** Every word inside a code span (`` `...` ``) or a fenced code block that starts
  with one of the repository's own top-level folders (``pipeline/``, ``stages/``,
  ``tests/``, ``benchmarks/``, ``configs/``, ``docs/``, ``scripts/``, ``mk/``, ``.ci/``)
  or is one of its top-level files (``Makefile``, ``README.md``, ``setup.cfg``,
  ``pyproject.toml``) must exist; a ``:name`` suffix (``pipeline/ensemble/stack.py:search_label``)
  and a ``VAR=`` prefix are stripped first. Not checked: build outputs and user data
  (``build/``, ``data/``, ``submissions/``, ``folds/``, ``../shared/``, anything else not
  in the lists above) and placeholders: a word holding ``<``, ``>``, ``*``, ``{``, ``[``,
  ``$`` or ``…`` (``configs/<name>.toml``). An example path a user creates is written with
  a placeholder.
- **Modules.** A dotted name in code starting ``pipeline.``, ``stages.`` or
  ``benchmarks.`` names a module that exists, optionally followed by one name that its
  source mentions (``pipeline.runtime.images.IMAGE_EXTENSIONS``).
- **Make targets.** In code, ``make`` followed by options (``-n``) and ``VAR=value``
  words, then a target-like word: that word is a target of the Makefile or of a file it
  includes by a literal path (a rule ``name:`` or a ``.PHONY`` entry).
- **Links.** Every relative Markdown link resolves to a file, and its ``#anchor`` (if
  any) to a heading of that file (GitHub's heading ids).
- **No history.** No line names a session or a commit (``session 3``, ``this session``,
  ``commit abc1234``, a bare commit id): docs state what was measured, not when.

And the ``[[external]]`` pandas example in ``docs/data-contract.md`` runs and writes a file
that passes the checks ``make external`` makes.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_BYTES = 15_000

REPO_DIRS = ("pipeline", "stages", "tests", "benchmarks", "configs", "docs", "scripts", "mk", ".ci")
REPO_FILES = ("Makefile", "README.md", "setup.cfg", "pyproject.toml")
PLACEHOLDER = re.compile(r"[<>*{}\[\]$…]|\.\.\.")
FENCE = re.compile(r"^(```|~~~)([^\n]*)\n(.*?)^\1[ \t]*$", re.M | re.S)  # fence, info, body
CODE_SPAN = re.compile(r"`([^`]+)`")  # a span may wrap a line
INDENTED_CODE = re.compile(r"^(?: {4}|\t)(\S.*)$", re.M)  # after a blank line, in these docs
MODULE = re.compile(r"\b((?:pipeline|stages|benchmarks)(?:\.[A-Za-z_]\w*)+)")
MAKE_CALL = re.compile(r"(?:^|(?<=[\s;&|(`]))make\s+([^\n`#;&|]*)")
TARGET_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HISTORY = [
    re.compile(r"\bsessions? \d", re.I),
    re.compile(r"\b(?:this|that|previous|earlier|last|next|starting) session\b", re.I),
    re.compile(r"\bsession's\b", re.I),
    re.compile(r"\bcommit [0-9a-f]{7,40}\b", re.I),
    # a bare commit id: 7-40 hex characters with at least one digit and one letter
    re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b"),
]


def _code(text: str) -> list[str]:
    """The code in a Markdown page: fenced blocks, indented blocks and code spans."""
    fenced = [m.group(3) for m in FENCE.finditer(text)]
    prose = FENCE.sub("", text)
    indented = INDENTED_CODE.findall(prose)
    return fenced + indented + CODE_SPAN.findall(prose)


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _repo_path(word: str) -> str | None:
    """The repository path a word of code names, or None when it names none (see the
    module docstring for the rule)."""
    word = word.lstrip("(['\"").rstrip(")],;:'\".")
    word = word.rsplit("=", 1)[-1]
    if not word or PLACEHOLDER.search(word):
        return None
    path = re.sub(r"(\.\w+):\w+$", r"\1", word)  # pipeline/ensemble/stack.py:search_label
    top = path.split("/", 1)[0]
    if (top in REPO_DIRS and "/" in path) or path in REPO_FILES:
        return path
    return None


def _make_files() -> list[Path]:
    """The Makefile and every file it includes by a literal path (a glob is expanded)."""
    files = [ROOT / "Makefile"]
    for line in _logical_lines(files[0].read_text()):
        m = re.match(r"-?include\s+(.+)", line)
        if m:
            for pattern in m.group(1).split():
                if "$" not in pattern:
                    files += [Path(p) for p in sorted(glob.glob(str(ROOT / pattern)))]
    return files


def _logical_lines(text: str) -> list[str]:
    return text.replace("\\\n", " ").splitlines()


def make_targets() -> set[str]:
    """Every literal target: rule heads (``a b: ...``, not ``:=``) and ``.PHONY`` names."""
    targets: set[str] = set()
    for path in _make_files():
        for line in _logical_lines(path.read_text()):
            if line.startswith(("\t", "#")) or not line.strip():
                continue
            m = re.match(r"([^:=#]+?)\s*(?:&)?::?(?!=)(.*)", line)
            if not m:
                continue
            head, rest = m.group(1).split(), m.group(2)
            if head == [".PHONY"]:
                targets.update(rest.split())
            else:
                targets.update(t for t in head if "$" not in t and "%" not in t)
    return targets


def _slug(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def test_the_readme_is_a_user_guide_of_at_most_15_kb():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size:,} bytes; move detail to docs/"
    assert DOCS, "docs/*.md hold the design, data contract and benchmarks"


def test_every_repository_path_the_docs_name_exists():
    missing = []
    for page in PAGES:
        for code in _code(page.read_text(encoding="utf-8")):
            for word in code.split():
                path = _repo_path(word)
                if path and not (ROOT / path).exists():
                    missing.append(f"{_rel(page)}: {path}")
    assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


def _module_exists(dotted: str) -> bool:
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:n])
        source = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if source.is_file():
            rest = parts[n:]
            if not rest:
                return True
            text = source.read_text(encoding="utf-8")
            return len(rest) == 1 and re.search(rf"\b{re.escape(rest[0])}\b", text) is not None
    return False


def test_every_module_the_docs_name_exists():
    missing = [
        f"{_rel(page)}: {name}"
        for page in PAGES
        for code in _code(page.read_text(encoding="utf-8"))
        for name in MODULE.findall(code)
        if not _module_exists(name)
    ]
    assert not missing, "modules named in the docs that do not exist:\n" + "\n".join(missing)


def _named_targets(code: str) -> list[str]:
    named = []
    for call in MAKE_CALL.finditer(code):
        for word in call.group(1).split():
            if word.startswith("-") or re.fullmatch(r"\w+=.*", word):
                continue  # an option or a variable
            if TARGET_WORD.fullmatch(word) and not word[0].isupper():
                named.append(word)
            break  # the first other word is the target, or a placeholder
    return named


def test_every_make_target_the_docs_name_is_a_rule():
    targets = make_targets()
    assert {"all", "help", "test", "test-all", "stack"} <= targets  # the parse sees rules
    unknown = [
        f"{_rel(page)}: make {name}"
        for page in PAGES
        for code in _code(page.read_text(encoding="utf-8"))
        for name in _named_targets(code)
        if name not in targets
    ]
    assert not unknown, "make targets named in the docs that no Makefile has:\n" + "\n".join(
        unknown
    )


def test_the_target_and_path_parsers_see_what_they_must():
    assert _named_targets("make -n all CONFIG=x.toml") == ["all"]
    assert _named_targets("`make cluster-up WORKERS=2` / make <that file> / make ... X") == [
        "cluster-up"
    ]
    assert (
        _repo_path("`pipeline/ensemble/stack.py:search_label`".strip("`"))
        == "pipeline/ensemble/stack.py"
    )
    assert _repo_path("CONFIG=configs/demo.toml") == "configs/demo.toml"
    assert _repo_path("configs/<name>.toml") is None
    assert _repo_path("build/bench/speed.json") is None
    assert _slug("Teammates' models ([[external]] members)") == "teammates-models-external-members"


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                broken.append(f"{_rel(page)}: {target} (no file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{_rel(page)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_no_line_tells_history_by_session_or_commit():
    found = [
        f"{_rel(page)}:{i}: {line.strip()}"
        for page in PAGES
        for i, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if any(p.search(line) for p in HISTORY)
    ]
    assert not found, "docs state facts, not their history:\n" + "\n".join(found)


def _external_example() -> str:
    text = (ROOT / "docs" / "data-contract.md").read_text(encoding="utf-8")
    examples = [
        m.group(3)
        for m in FENCE.finditer(text)
        if m.group(2) == "python" and "to_csv" in m.group(3)
    ]
    assert len(examples) == 1, "docs/data-contract.md has one pandas exchange-file example"
    return examples[0]


def _probs(model: int, ids, n_labels: int) -> np.ndarray:
    """A made-up model's sigmoid outputs: a different value per (model, image, label)."""
    codes = np.array([int(str(i)[1:]) for i in ids], dtype=float)[:, None]
    return (codes * 7 + model * 3 + np.arange(n_labels)) % 97 / 97


def test_the_external_pandas_example_writes_a_file_make_external_accepts(tmp_path, monkeypatch):
    from pipeline.artifacts import load_external_predictions
    from pipeline.members.external import split_external

    labels, n_folds = ["red", "dotted", "long_sleeve"], 3
    train_ids = np.array([f"t{i:03d}" for i in range(12)])
    folds = np.arange(12) % n_folds
    test_ids = np.array([f"q{i:03d}" for i in range(5)])
    (tmp_path / "folds").mkdir()
    pd.DataFrame({"image": train_ids, "fold": folds}).to_csv(
        tmp_path / "folds/demo.csv", index=False
    )
    for split in ("train", "test"):
        (tmp_path / "data/demo" / split).mkdir(parents=True)
    train = pd.DataFrame(np.zeros((12, 3), int), columns=labels)
    train.insert(0, "image", train_ids)
    train.to_csv(tmp_path / "data/demo/train/labels.csv", index=False)
    pd.DataFrame({"image": test_ids}).to_csv(tmp_path / "data/demo/test/test.csv", index=False)
    (tmp_path / "teammates").mkdir()

    trained_on = {}

    def fit(ids):  # the teammate's training: the model is the fold it left out
        k = int(np.setdiff1d(folds, folds[np.isin(train_ids, ids)])[0])
        trained_on[k] = set(ids)
        return k

    def predict(model, ids):
        return _probs(model, ids, len(labels))

    monkeypatch.chdir(tmp_path)
    exec(_external_example(), {"fit": fit, "predict": predict})  # noqa: S102

    data = load_external_predictions(tmp_path / "teammates/timm_b3.csv", labels)
    parts = split_external(data, train_ids, folds, test_ids, n_folds)
    assert len(parts) == n_folds
    for k, part in enumerate(parts):
        assert not trained_on[k] & set(part.val_ids)  # OOF rows: never seen by their model
        assert list(part.val_ids) == list(train_ids[folds == k])
        np.testing.assert_allclose(part.oof, _probs(k, part.val_ids, len(labels)))
        np.testing.assert_allclose(part.test, _probs(k, test_ids, len(labels)))


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_each_page_has_a_title(page):
    assert page.read_text(encoding="utf-8").startswith("# ")
