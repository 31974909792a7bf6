import subprocess
import sys

import nbformat
import pytest

from upgan_lib import cli
from upgan_lib.course import CourseError, check_notebook_structure, colab_link_source, run_course


def test_cli_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in ("prepare", "train", "evaluate", "obscure", "course"):
        assert name in out


def test_console_script_installed():
    r = subprocess.run([sys.executable, "-m", "upgan_lib.cli", "course", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--preset" in r.stdout


def test_course_stops_with_the_failing_notebook_and_cell(tmp_path):
    from upgan_lib.course import COLAB_SETUP_SOURCE

    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    cells = [nbformat.v4.new_code_cell(COLAB_SETUP_SOURCE),
             nbformat.v4.new_code_cell('PRESET = "auto"\nDEVICE = "auto"\nSEED = 0\nDATA_ROOT = None\nCACHE_DIR = None'),
             nbformat.v4.new_code_cell("x = 1"),
             nbformat.v4.new_code_cell("raise ValueError('boom from the test')")]
    cells[1].metadata["tags"] = ["parameters"]
    good = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(colab_link_source("00_good.ipynb")), *cells[:3]])
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(colab_link_source("01_bad.ipynb")), *cells])
    for nb in (good, bad):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(good, nbdir / "00_good.ipynb")
    nbformat.write(bad, nbdir / "01_bad.ipynb")
    check_notebook_structure(bad, "01_bad.ipynb")
    with pytest.raises(CourseError, match=r"01_bad.ipynb failed in cell \d+.*boom from the test"):
        run_course("smoke", out_dir=tmp_path / "out", notebooks=nbdir, progress=False)
    assert (tmp_path / "out" / "00_good.ipynb").exists()


def test_structure_check_rejects_missing_parameters():
    from upgan_lib.course import COLAB_SETUP_SOURCE

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(colab_link_source("x.ipynb")),
                                         nbformat.v4.new_code_cell(COLAB_SETUP_SOURCE), nbformat.v4.new_code_cell("x=1")])
    with pytest.raises(CourseError, match="parameters"):
        check_notebook_structure(nb, "x.ipynb")
    nb.cells.pop(0)
    with pytest.raises(CourseError, match="Open in Colab"):
        check_notebook_structure(nb, "x.ipynb")


def test_presets_resolve(monkeypatch):
    import torch

    from upgan_lib.config import resolve_preset

    assert resolve_preset("smoke") == "smoke" and resolve_preset("full") == "full"
    for cuda, preset in ((True, "full"), (False, "smoke")):  # auto: the paper's run on a GPU, smoke elsewhere
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        assert resolve_preset("auto") == resolve_preset(None) == preset
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_preset("huge")


@pytest.mark.notebook
def test_full_course_without_data_stops_in_chapter_01_with_one_instruction(tmp_path):
    """`upgan course --preset full` with an empty data root: chapter 01 says what to do, no traceback."""
    import os

    env = {**os.environ, "UPGAN_DATA": str(tmp_path / "empty"), "UPGAN_CACHE": str(tmp_path / "cache")}
    (tmp_path / "empty").mkdir()
    r = subprocess.run([sys.executable, "-m", "upgan_lib.cli", "course", "--preset", "full", "--only", "01",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "01_data_preparation.ipynb stopped: UTKFace is missing. Put UTKFace.tar.gz" in r.stdout, out
    assert "Traceback" not in out and "without encryption" not in out, out


def test_saved_progress_bars_show_their_final_state():
    from upgan_lib.course import finish_progress_bars

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("train()")])
    nb.cells[0].outputs = [nbformat.v4.new_output("display_data", data={
        "text/plain": "  0%|          | 0/4 [00:00<?, ?it/s]",
        "application/vnd.jupyter.widget-view+json": {"model_id": "box", "version_major": 2, "version_minor": 0}})]
    state = {"box": {"state": {"children": ["IPY_MODEL_left", "IPY_MODEL_bar", "IPY_MODEL_right"]}},
             "left": {"state": {"value": "epochs: 100%"}}, "bar": {"state": {"value": 4, "max": 4}},
             "right": {"state": {"value": " 4/4 [00:02&lt;00:00,  1.9it/s]"}}}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    assert finish_progress_bars(nb) == 1
    assert nb.cells[0].outputs[0]["data"]["text/plain"] == "epochs: 100%  4/4 [00:02<00:00,  1.9it/s]"
