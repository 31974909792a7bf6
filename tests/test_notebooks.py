"""Every course notebook, executed by papermill on the smoke preset (what `upgan course` does).

nbval separately re-runs the committed notebooks (`pytest` collects notebooks/ with
--nbval-lax) and compares the outputs of cells marked `# NBVAL_CHECK_OUTPUT`.
"""
import nbformat
import pytest

from upgan_lib.course import check_notebook_structure, list_notebooks, run_course

NOTEBOOKS = list_notebooks()


@pytest.mark.notebook
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_papermill_on_smoke(nb, tmp_path):
    records = run_course("smoke", out_dir=tmp_path, only=[nb.stem], progress=False)
    assert [r["notebook"] for r in records] == [nb.name]
    executed = nbformat.read(tmp_path / nb.name, as_version=4)
    assert executed.metadata["papermill"]["parameters"]["PRESET"] == "smoke"
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    figures = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "image/png" in o.get("data", {})]
    assert figures, f"{nb.name} shows no figure on the smoke preset"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_structure_and_committed_outputs(nb):
    book = nbformat.read(nb, as_version=4)
    check_notebook_structure(book, nb.name)
    for cell in book.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            # committed notebooks carry only small text outputs of checked cells: no images
            assert "# NBVAL_CHECK_OUTPUT" in cell.source, f"{nb.name}: unchecked cell has committed output"
            assert not any(k.startswith("image/") for k in out.get("data", {})), f"{nb.name}: committed image"
    assert nb.stat().st_size < 200_000, f"{nb.name} is {nb.stat().st_size} bytes: strip outputs (tools/nbtool.py refresh)"


def test_notebooks_are_numbered_without_gaps():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == list(range(len(numbers)))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_papermill_reads_every_knob_of_the_parameters_cell(nb):
    """papermill must infer every assignment of the parameters cell (its parser gives up on a line
    whose comment holds '='), so `upgan course -p NAME VALUE` and the Colab form see all knobs."""
    import re

    import papermill

    book = nbformat.read(nb, as_version=4)
    cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
    assigned = re.findall(r"^([A-Z_][A-Z0-9_]*)\s*=", cell.source, flags=re.M)
    assert set(papermill.inspect_notebook(str(nb))) == set(assigned)
