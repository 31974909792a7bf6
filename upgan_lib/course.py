"""Running the course: notebook conventions, per-notebook set-up, and `upgan course`.

`upgan course` executes every numbered notebook in order with papermill, passing the preset
as a parameter, writes the executed copies to ``outputs/notebooks/`` and stops at the first
failure with the notebook's name and the failing cell.
"""
from __future__ import annotations

import argparse
import contextlib
import html as _h
import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import colab_url, install_source
from .config import cache_dir as _cache_dir
from .config import data_root as _data_root
from .config import repo_root, resolve_device, resolve_preset, seed_everything

NBVAL_MARK = "# NBVAL_CHECK_OUTPUT"
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"

#: The first code cell of every notebook (inserted by tools/nbtool.py build). Everything it names
#: comes from ``upgan_lib/__init__.py`` (repository, git ref). ``UPGAN_COURSE_SOURCE`` replaces
#: what pip installs (a local checkout in the tests).
COLAB_SETUP_SOURCE = f'''\
# Set-up. On Google Colab this installs the course and only the packages Colab lacks (its own torch,
# numpy, ... are kept); if that upgrades a package already in use, it stops and says to restart.
# Anywhere else it does nothing: run `bash setup.sh` once in the repository instead.
# GPU on Colab: Runtime > Change runtime type > T4 GPU (or better), then Runtime > Run all.
import os, sys
if "google.colab" in sys.modules:
    import importlib, importlib.metadata, subprocess
    try:
        importlib.metadata.version("upgan-course")
    except importlib.metadata.PackageNotFoundError:
        source = os.environ.get("UPGAN_COURSE_SOURCE", "{install_source()}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", f"upgan-course @ {{source}}"], check=True)
        importlib.invalidate_caches()
    from upgan_lib.colab import install_missing
    install_missing()'''


def colab_link_source(notebook: str) -> str:
    """The markdown cell at the top of a notebook: its "Open in Colab" badge."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(notebook)})")


class CourseError(RuntimeError):
    """A notebook of the course failed; the message names the notebook and the cell."""


@dataclass
class NotebookContext:
    preset: str
    device: object  # torch.device
    seed: int
    data_root: Path
    cache_dir: Path
    out_dir: Path

    def __str__(self) -> str:
        return (f"preset={self.preset}  device={self.device}  seed={self.seed}\n"
                f"data root: {self.data_root}\ncache:     {self.cache_dir}\noutputs:   {self.out_dir}")


def notebook_setup(preset: str = "auto", device: str = "auto", seed: int = 0, data_root=None, cache_dir=None,
                   name: str = "notebook", verbose: bool = True) -> NotebookContext:
    """Resolve a notebook's parameters cell into a context and seed everything."""
    import torch

    # face_recognition_models imports pkg_resources, which warns about its own deprecation
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from .colab import drive_folder, in_colab, mount_drive

    if in_colab() and cache_dir is None and not os.environ.get("UPGAN_CACHE"):
        mount_drive()  # the cache then lives on Drive and outlives this virtual machine
    ctx = NotebookContext(
        preset=resolve_preset(preset), device=resolve_device(device), seed=int(seed),
        data_root=_data_root(data_root), cache_dir=_cache_dir(cache_dir), out_dir=Path(),
    )
    ctx.out_dir = ctx.cache_dir / "course" / name
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(ctx.seed)
    if ctx.device.type == "cpu":
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    if verbose:
        print(ctx)
        if in_colab():
            on_drive = drive_folder() is not None and str(ctx.cache_dir).startswith(str(drive_folder()))
            print("the cache is on Google Drive: an interrupted run continues after a reconnect" if on_drive else
                  "the cache is on this Colab machine: it is lost when Colab recycles the machine (mount Google Drive "
                  "by running this cell again and accepting, or set CACHE_DIR)")
        if ctx.device.type == "cpu" and ctx.preset == "full":
            print("warning: the full preset on a CPU will take a very long time; switch on a GPU or use PRESET='smoke'")
    return ctx


# ---------------------------------------------------------------------------- notebooks
def notebooks_dir(path=None) -> Path:
    if path:
        return Path(path)
    root = repo_root()
    if root is None:
        raise CourseError("cannot find the course notebooks: pass --notebooks DIR (the repository's notebooks/ folder)")
    return root / "notebooks"


def list_notebooks(path=None) -> list[Path]:
    nbs = sorted(notebooks_dir(path).glob(NOTEBOOK_GLOB))
    if not nbs:
        raise CourseError(f"no numbered notebooks (NN_topic.ipynb) in {notebooks_dir(path)}")
    return nbs


def check_notebook_structure(nb, name: str) -> None:
    """Every notebook: its "Open in Colab" link first, the Colab set-up as first code cell, then one
    `parameters` cell with PRESET."""
    if not nb.cells or nb.cells[0].cell_type != "markdown" or nb.cells[0].source.strip() != colab_link_source(name):
        raise CourseError(f"{name}: the first cell must be its 'Open in Colab' link (rebuild with tools/nbtool.py)")
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code or code[0].source.strip() != COLAB_SETUP_SOURCE.strip():
        raise CourseError(f"{name}: the first code cell must be the standard Colab set-up cell (rebuild with tools/nbtool.py)")
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    if len(params) != 1:
        raise CourseError(f"{name}: needs exactly one cell tagged 'parameters', found {len(params)}")
    if code.index(params[0]) != 1:
        raise CourseError(f"{name}: the parameters cell must come right after the set-up cell")
    for knob in ("PRESET", "DEVICE", "SEED", "DATA_ROOT", "CACHE_DIR"):
        if f"{knob} =" not in params[0].source:
            raise CourseError(f"{name}: the parameters cell does not set {knob}")


#: Errors a notebook raises to ask the student for something (data, a file): `upgan course` prints
#: their message alone, without a traceback.
INSTRUCTION_ERRORS = ("ManualStepRequired", "PrepareError", "RestartRequired")


def kernel_manager_class():
    """The kernel manager papermill uses: local IPC sockets instead of TCP on Linux/macOS (nothing
    listens on the network, and the kernel has no "running over TCP without encryption" warning
    to print into the progress bar)."""
    from jupyter_client.manager import AsyncKernelManager

    if os.name != "posix":
        return AsyncKernelManager
    folder = tempfile.mkdtemp(prefix="upgan-kernels-")  # one per run; the kernels remove their sockets

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.transport = "ipc"
            self.ip = os.path.join(folder, "kernel")

    return IPCKernelManager


def finish_progress_bars(nb) -> int:
    """Replace the text of each saved progress-bar widget (tqdm in a notebook) by its final state.

    A notebook executed without a browser keeps the widgets' last state in its metadata, but the
    text shown by viewers that do not run widgets is the bar's first frame (0 %). Returns how many
    bars were rewritten."""
    state = (nb.metadata.get("widgets") or {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    if not state:
        return 0

    def html(mid):
        return (state.get(mid.replace("IPY_MODEL_", ""), {}).get("state", {}) or {}).get("value", "")

    n = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if not view:
                continue
            box = state.get(view.get("model_id"), {}).get("state", {})
            kids = box.get("children") or []
            if len(kids) != 3:
                continue
            text = " ".join(_h.unescape(re.sub(r"<[^>]+>", "", html(k))) for k in (kids[0], kids[2])).strip()
            if text:
                out["data"]["text/plain"] = text
                n += 1
    return n


def run_course(preset: str = "auto", out_dir=None, notebooks=None, only: list[str] | None = None,
               parameters: dict | None = None, progress: bool = True, timeout: int | None = None) -> list[dict]:
    """Execute the notebooks in order; returns one record per notebook (name, seconds, output path)."""
    from tqdm.auto import tqdm

    preset = resolve_preset(preset)
    nbs = list_notebooks(notebooks)
    if only:
        nbs = [p for p in nbs if any(p.name.startswith(o) or p.stem == o for o in only)]
        if not nbs:
            raise CourseError(f"no notebook matches {only}")
    out_dir = Path(out_dir) if out_dir else (repo_root() or Path.cwd()) / "outputs" / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"PRESET": preset, **(parameters or {})}
    records = []
    bar = tqdm(nbs, desc=f"course ({preset})", unit="notebook", disable=not progress)
    with inline_figures():
        for nb in bar:
            bar.set_postfix_str(nb.name)
            records.append(_run_one(nb, out_dir / nb.name, params, timeout))
    return records


#: the backend IPython uses for figures in a notebook
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


@contextlib.contextmanager
def inline_figures():
    """Kernels started inside show their figures in the notebook: ``MPLBACKEND`` set to a
    non-interactive backend (``Agg``, as CI and test runs set it for the parent process) is
    inherited by a kernel and would keep every figure out of the executed notebooks."""
    before = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = before


def _run_one(nb: Path, out: Path, params: dict, timeout: int | None) -> dict:
    """Execute one notebook into ``out``; its record (name, seconds, output path)."""
    import nbformat
    import papermill as pm

    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(nb), str(out), parameters=params, cwd=str(nb.parent), progress_bar=False,
                            kernel_name="python3", execution_timeout=timeout,
                            kernel_manager_class=kernel_manager_class())
    except pm.PapermillExecutionError as e:
        if e.ename in INSTRUCTION_ERRORS:
            raise CourseError(f"{nb.name} stopped: {e.evalue}\n(the executed notebook is at {out})") from e
        raise CourseError(
            f"{nb.name} failed in cell {e.cell_index} (execution count {e.exec_count}): {e.ename}: {e.evalue}\n"
            f"the executed notebook with the traceback is at {out}"
        ) from e
    finally:
        if out.exists():
            book = nbformat.read(out, as_version=4)
            if finish_progress_bars(book):
                nbformat.write(book, out)
    return {"notebook": nb.name, "seconds": round(time.perf_counter() - t0, 1), "output": str(out)}


# ---------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="auto", choices=["auto", "smoke", "full"],
                   help="smoke: CPU, tiny data, seconds; full: the paper's run on a GPU; auto: full on a GPU, else smoke")
    p.add_argument("--out", default=None, help="folder for the executed notebooks (default outputs/notebooks)")
    p.add_argument("--notebooks", default=None, help="folder of the numbered notebooks (default: the repository's)")
    p.add_argument("--only", nargs="*", default=None, help="run only these notebooks (prefix like 03 or a stem)")
    p.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")


def run(args) -> int:
    try:
        records = run_course(args.preset, args.out, args.notebooks, args.only, timeout=args.timeout)
    except CourseError as e:
        print(f"upgan course: {e}")
        return 1
    total = sum(r["seconds"] for r in records)
    for r in records:
        print(f"  {r['notebook']:<36} {r['seconds']:7.1f} s")
    print(f"{len(records)} notebooks executed in {total:.1f} s; outputs in {Path(records[0]['output']).parent}")
    return 0
