"""Google Colab, simulated: the set-up cell, Drive, and chapters of the course in a fresh virtual
environment.

The environment stands in for a Colab runtime: a new venv that already has torch and the rest of
what Colab ships (the packages of the environment running the tests, shared read-only through a
folder of links; the course itself is left out), a stand-in ``google.colab`` module imported at
start-up as on Colab, and a stand-in Google Drive. pip is offline (``PIP_NO_INDEX``): the set-up
cell installs the course from a copy of this checkout and must find nothing else to install.

``pytest -m colab`` runs these. The session test costs about what chapters 00, 01, 09 and 10 cost in
``upgan course --preset smoke``, plus the venv and the set-up cell (seconds: nothing is downloaded).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import nbformat
import pytest

from upgan_lib import colab
from upgan_lib.course import COLAB_SETUP_SOURCE

REPO = Path(__file__).resolve().parent.parent
STANDIN = {
    "google/__init__.py": "",
    "google/colab/__init__.py": "from . import drive, userdata  # noqa: F401\n",
    "google/colab/drive.py": textwrap.dedent('''\
        """Stand-in for google.colab.drive: 'mounts' $STANDIN_DRIVE at the mount point."""
        import os


        def mount(mountpoint, force_remount=False):
            os.makedirs(mountpoint, exist_ok=True)
            target = os.path.join(mountpoint, "MyDrive")
            if not os.path.exists(target):
                os.symlink(os.environ["STANDIN_DRIVE"], target)
            print("Mounted at", mountpoint)
        '''),
    "google/colab/userdata.py": textwrap.dedent('''\
        class SecretNotFoundError(Exception):
            pass


        def get(key):
            raise SecretNotFoundError(key)
        '''),
}


def _checkout_copy(dest: Path) -> Path:
    """The working tree's files as git sees them (tracked and untracked, not ignored)."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, names):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _colab_like_venv(tmp: Path) -> tuple[Path, dict]:
    """A fresh venv seeing this environment's packages except the course: (python, environment)."""
    site = Path(sysconfig.get_paths()["purelib"])
    base = tmp / "colab-base"
    base.mkdir()
    for entry in site.iterdir():
        n = entry.name.lower()
        if n.startswith(("upgan_course", "__editable__", "upgan_lib")) or n.endswith(".pth"):
            continue
        (base / entry.name).symlink_to(entry)
    standin = tmp / "standin"
    for name, text in STANDIN.items():
        (standin / name).parent.mkdir(parents=True, exist_ok=True)
        (standin / name).write_text(text)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    vsite = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                check=True, capture_output=True, text=True).stdout.strip())
    # what Colab has, then google.colab imported at start-up as in a Colab kernel
    (vsite / "zz_colab_standin.pth").write_text(f"{base}\n{standin}\nimport google.colab\n")
    drive = tmp / "drive-content"
    (drive / "upgan").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPGAN_", "VIRTUAL_ENV", "PYTHON"))}
    env.update({
        "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}", "HOME": str(tmp / "home"),
        "UPGAN_COLAB_CONTENT": str(tmp / "content"), "UPGAN_DATA": str(tmp / "content" / "data"),
        "STANDIN_DRIVE": str(drive),
        "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "OMP_NUM_THREADS": "1", "JUPYTER_PLATFORM_DIRS": "1",
    })
    env.pop("MPLBACKEND", None)  # as on Colab: figures show inline
    (tmp / "home").mkdir()
    return py, env


def _run_setup_cell(py: Path, env: dict, tmp: Path) -> str:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(COLAB_SETUP_SOURCE)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, out = tmp / "setup.ipynb", tmp / "setup-out.ipynb"
    nbformat.write(nb, src)
    r = subprocess.run([str(py), "-m", "papermill", str(src), str(out), "--no-progress-bar", "-k", "python3"],
                       env=env, capture_output=True, text=True, timeout=300, cwd=tmp)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    cell = nbformat.read(out, as_version=4).cells[0]
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.colab
@pytest.mark.notebook
@pytest.mark.real_data
def test_simulated_colab_session(tmp_path):
    from upgan_lib.config import data_root

    utk = data_root() / "UTKFace.tar.gz"
    if not utk.exists():
        pytest.skip(f"real data not available: {utk} is missing (set UPGAN_DATA to the shared datasets)")
    copy = _checkout_copy(tmp_path / "checkout")
    py, env = _colab_like_venv(tmp_path)
    env["UPGAN_COURSE_SOURCE"] = copy.as_uri()
    # the student's Drive holds the UTKFace archive (the shared copy, linked)
    (Path(env["STANDIN_DRIVE"]) / "upgan" / "UTKFace.tar.gz").symlink_to(utk)

    printed = _run_setup_cell(py, env, tmp_path)
    assert "upgan-course: every requirement is already installed" in printed, printed
    probe = subprocess.run([str(py), "-c", "import importlib.metadata as m, upgan_lib; "
                            "print(m.version('upgan-course'), upgan_lib.__file__)"],
                           env=env, capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert str(tmp_path / "venv") in probe, f"the course was not installed into the new environment: {probe}"

    out = tmp_path / "executed"
    driver = textwrap.dedent(f"""\
        from upgan_lib.course import run_course
        nbs, out = {str(copy / 'notebooks')!r}, {str(out)!r}
        run_course("smoke", out, nbs, only=["00"], progress=False)
        run_course("smoke", out, nbs, only=["01"], parameters={{"REAL_SAMPLE": 24}}, progress=False)
        run_course("smoke", out, nbs, only=["09", "10"], progress=False)
        """)
    r = subprocess.run([str(py), "-c", driver], env=env, capture_output=True, text=True, timeout=1800,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "without encryption" not in r.stderr

    # the UTKFace archive came from Drive into the data root, checked; the cache lives on Drive
    assert (Path(env["UPGAN_DATA"]) / "UTKFace.tar.gz").is_file()
    cache = Path(env["STANDIN_DRIVE"]) / "upgan" / "cache"
    assert (cache / "course" / "01_data_preparation" / "prepared_utkface_real24").is_dir()
    text = {p.stem[:2]: p.read_text() for p in out.glob("*.ipynb")}
    assert sorted(text) == ["00", "01", "09", "10"]
    assert re.search(r"SHA-256 (\w{64} )?verified", text["01"]), "chapter 01 did not check the archive it copied"
    assert re.search(r"2[0-4] faces: \d+% aged 20-39", text["01"]), "chapter 01 did not prepare the real sample"
    assert "the cache is on Google Drive" in text["00"]
    for k, body in text.items():
        assert '"output_type": "error"' not in body, k
        assert "image/png" in body, f"chapter {k} shows no figure"


def test_restart_is_asked_only_for_imported_packages_that_changed():
    before = {"numpy": "1.26.4", "ipywidgets": "7.7.1", "papermill": "2.6.0"}
    after = {"numpy": "1.26.4", "ipywidgets": "8.1.5", "papermill": "2.7.0", "dlib-bin": "20.0"}
    # ipywidgets is imported (as "ipywidgets"), papermill is not: only ipywidgets needs a restart
    assert colab.needs_restart(before, after, ["ipywidgets.widgets", "numpy", "sys"]) == ["ipywidgets"]
    assert colab.needs_restart(before, before, ["ipywidgets", "numpy"]) == []


def test_missing_requirements_skip_dev_tools_and_what_is_installed():
    import importlib.metadata as md

    assert any("pytest" in r for r in md.requires("upgan-course"))  # the dev extra exists, and is skipped:
    assert colab.missing_requirements() == ([], [])  # this environment has everything (setup.sh installed it)


def test_setup_cell_names_the_one_repository_and_ref():
    import tomllib

    import upgan_lib

    assert upgan_lib.install_source() in COLAB_SETUP_SOURCE
    assert "[dev]" not in COLAB_SETUP_SOURCE
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["urls"]["Homepage"] == upgan_lib.COURSE_REPOSITORY
    assert meta["tool"]["setuptools"]["dynamic"]["version"]["attr"] == "upgan_lib.__version__"
    readme = (REPO / "README.md").read_text()
    for nb in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert upgan_lib.colab_url(nb.name) in readme, f"README lacks the Colab link of {nb.name}"


def test_drive_becomes_the_cache_on_colab(tmp_path, monkeypatch):
    import types

    from upgan_lib import config

    monkeypatch.setenv("UPGAN_COLAB_CONTENT", str(tmp_path))
    monkeypatch.delenv("UPGAN_CACHE", raising=False)
    monkeypatch.delenv("UPGAN_DATA", raising=False)  # CI sets it; a student on Colab does not
    monkeypatch.setattr(config, "repo_root", lambda: None)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert config.cache_dir(create=False) == tmp_path / "upgan" / ".cache"
    (tmp_path / "drive" / "MyDrive").mkdir(parents=True)
    assert config.cache_dir(create=False) == tmp_path / "drive" / "MyDrive" / "upgan" / "cache"
    json.dumps(str(config.data_root()))  # the data root stays on the machine
    assert config.data_root() == tmp_path / "upgan" / "data"
