import subprocess
import sys

import nbformat
import pytest

from upgan_lib import cli
from upgan_lib.course import CourseError, check_notebook_structure, run_course


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
    good = nbformat.v4.new_notebook(cells=cells[:3])
    bad = nbformat.v4.new_notebook(cells=cells)
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

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(COLAB_SETUP_SOURCE), nbformat.v4.new_code_cell("x=1")])
    with pytest.raises(CourseError, match="parameters"):
        check_notebook_structure(nb, "x.ipynb")


def test_presets_resolve():
    from upgan_lib.config import resolve_preset

    assert resolve_preset("smoke") == "smoke" and resolve_preset("full") == "full"
    assert resolve_preset("auto") in ("smoke", "full")
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_preset("huge")
