"""examples/lecture.ipynb: committed without outputs, as its generator writes it, and it runs.

The default suite runs the notebook top to bottom at a smoke size (the parameters
injected after the cell tagged ``parameters``, as papermill does); ``pytest -m slow``
runs it at its own (small) default size. Both check that every code cell ran without an
error and that the figures came out.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOK = EXAMPLES / "lecture.ipynb"

#: Smaller than the notebook's defaults: every step runs, nothing learns.
SMOKE = {
    "N_TRAIN": 60,
    "N_TEST": 40,
    "IMAGE_SIZE": 64,
    "SEED_INPUT": 16,
    "POLAR_INPUT": 32,
    "EPOCHS": 1,
    "N_VARIANT": 30,
}


def _generator():
    spec = importlib.util.spec_from_file_location("make_nb", EXAMPLES / "make_lecture_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [], cell.source[:60]
        assert cell.execution_count is None
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and code.index(tagged[0]) <= 1  # set before anything runs


def test_committed_notebook_is_what_the_generator_writes():
    assert NOTEBOOK.read_text() == _generator().text(), (
        "run `python examples/make_lecture_notebook.py` after editing its cells"
    )


def _run(tmp_path: Path, params: dict[str, object] | None = None):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    if params:  # papermill's way: a cell after the parameters cell overrides them
        at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
        source = "\n".join(f"{k} = {v!r}" for k, v in params.items())
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = ["injected-parameters"]
        nb.cells.insert(at + 1, cell)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first cell that fails
    return nb


def _check(nb, tmp_path: Path) -> None:
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    # slide 13 grid, truth pair, two curves, polar curve, two score plots, ROC,
    # explanation pictures (at least one), noise-variant pair
    assert len(images) >= 10, len(images)
    tables = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert any("circle fit" in t and "ROC AUC" in t for t in tables)
    assert any("noise" in t and "efficiency" in t and "X0" in t for t in tables)
    out = tmp_path / "lecture_nb"
    for name in ("train.h5", "test.h5", "roc_all.png", "run_seed/best_model.keras",
                 "run_polar/best_model.keras", "eval_polar/explain/explain.json"):  # fmt: skip
        assert (out / name).is_file(), name


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_notebook_runs_top_to_bottom_smoke_size(tmp_path):
    nb = _run(tmp_path, SMOKE)
    _check(nb, tmp_path)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_notebook_runs_top_to_bottom_default_size(tmp_path):
    nb = _run(tmp_path)
    _check(nb, tmp_path)
