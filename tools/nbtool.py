#!/usr/bin/env python
"""Author, round-trip and refresh the course notebooks.

  build SRC.py OUT.ipynb   percent-format script -> notebook (inserts its "Open in Colab" link and the
                           standard Colab set-up cell)
  export NB.ipynb SRC.py   notebook -> percent-format script (drops the link and the set-up cell)
  refresh NB.ipynb [...]   execute on the smoke preset; keep outputs only in `# NBVAL_CHECK_OUTPUT` cells
  check NB.ipynb [...]     verify structure (set-up cell, parameters cell) without executing

Committed notebooks carry only the small, deterministic outputs that nbval regression-checks.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from upgan_lib.course import COLAB_SETUP_SOURCE, NBVAL_MARK, check_notebook_structure, colab_link_source  # noqa: E402

CELL_RE = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=\[(?P<tags>[^\]]*)\])?\s*$")


def parse_percent(text: str) -> list:
    cells, kind, tags, lines = [], None, [], []

    def flush():
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in body.splitlines())
            cell = nbformat.v4.new_markdown_cell(body)
        else:
            cell = nbformat.v4.new_code_cell(body)
        if tags:
            cell.metadata["tags"] = tags
        if body.strip():
            cells.append(cell)

    for line in text.splitlines():
        m = CELL_RE.match(line)
        if m:
            flush()
            kind = "markdown" if m.group("md") else "code"
            tags = [t.strip().strip("'\"") for t in m.group("tags").split(",")] if m.group("tags") else []
            lines = []
        else:
            lines.append(line)
    flush()
    return cells


def stable_cell_ids(cells: list) -> None:
    """Cell ids from the cell's kind and source, so rebuilding an unchanged cell keeps its id
    (small diffs); repeated cells get a counter."""
    seen: dict[str, int] = {}
    for c in cells:
        h = hashlib.sha1(f"{c.cell_type}\n{c.source}".encode()).hexdigest()[:10]
        seen[h] = seen.get(h, 0) + 1
        c["id"] = h if seen[h] == 1 else f"{h}-{seen[h]}"


def build(src: Path, out: Path) -> None:
    cells = parse_percent(src.read_text())
    setup = nbformat.v4.new_code_cell(COLAB_SETUP_SOURCE)
    setup.metadata["tags"] = ["colab-setup"]
    first_code = next((i for i, c in enumerate(cells) if c.cell_type == "code"), len(cells))
    cells.insert(first_code, setup)
    link = nbformat.v4.new_markdown_cell(colab_link_source(out.name))
    link.metadata["tags"] = ["colab-link"]
    cells.insert(0, link)
    stable_cell_ids(cells)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["accelerator"] = "GPU"
    nb.metadata["colab"] = {"provenance": [], "gpuType": "T4"}
    check_notebook_structure(nb, out.name)
    nbformat.write(nb, out)
    print(f"built {out} ({len(cells)} cells)")


def export(nb_path: Path, src: Path) -> None:
    nb = nbformat.read(nb_path, as_version=4)
    parts = []
    for c in nb.cells:
        if {"colab-setup", "colab-link"} & set(c.metadata.get("tags", [])):
            continue
        tags = c.metadata.get("tags", [])
        tag = f" tags=[{', '.join(repr(t).replace(chr(39), chr(34)) for t in tags)}]" if tags else ""
        if c.cell_type == "markdown":
            parts.append(f"# %% [markdown]{tag}\n" + "\n".join(f"# {ln}" if ln else "#" for ln in c.source.splitlines()))
        else:
            parts.append(f"# %%{tag}\n{c.source}")
    src.write_text("\n\n".join(parts) + "\n")
    print(f"exported {src}")


def refresh(nb_path: Path, timeout: int = 600) -> None:
    from nbclient import NotebookClient

    from upgan_lib.course import kernel_manager_class

    nb = nbformat.read(nb_path, as_version=4)
    check_notebook_structure(nb, nb_path.name)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(nb_path.parent)}},
                            kernel_manager_class=kernel_manager_class())
    client.execute()
    kept = 0
    for c in nb.cells:
        c.metadata.pop("execution", None)  # timestamps: noise in every diff
        if c.cell_type != "code":
            continue
        if NBVAL_MARK in c.source:
            c.outputs = [o for o in c.outputs if o.get("output_type") in ("stream", "execute_result")
                         and not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
            for o in c.outputs:  # text only: never images in committed notebooks
                if "data" in o:
                    o["data"] = {k: v for k, v in o["data"].items() if k == "text/plain"}
            kept += 1
        else:
            c.outputs = []
            c.execution_count = None
    for key in ("widgets",):
        nb.metadata.pop(key, None)
    stable_cell_ids(nb.cells)
    nbformat.write(nb, nb_path)
    print(f"refreshed {nb_path}: outputs kept in {kept} checked cell(s)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("src", type=Path)
    b.add_argument("out", type=Path)
    e = sub.add_parser("export")
    e.add_argument("nb", type=Path)
    e.add_argument("src", type=Path)
    r = sub.add_parser("refresh")
    r.add_argument("nbs", type=Path, nargs="+")
    c = sub.add_parser("check")
    c.add_argument("nbs", type=Path, nargs="+")
    a = ap.parse_args(argv)
    if a.cmd == "build":
        build(a.src, a.out)
    elif a.cmd == "export":
        export(a.nb, a.src)
    elif a.cmd == "refresh":
        for p in a.nbs:
            refresh(p)
    else:
        for p in a.nbs:
            check_notebook_structure(nbformat.read(p, as_version=4), p.name)
            print(f"{p}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
