"""Showing the library's own code in a chapter: the function a chapter teaches, as it really is.

``show_source(obj)`` displays the source of a function, method or class of the course (or of any
Python code) with the file and line it starts at: in Jupyter as a highlighted code block, in a
plain Python session as text. A chapter shows it next to the call, so what is explained is what
runs, and an edit to the library shows up in the chapter.
"""
from __future__ import annotations

import inspect
import textwrap
from pathlib import Path


def source_of(obj, start: str | None = None, stop: str | None = None) -> str:
    """The source of ``obj`` (dedented), headed by a comment naming its file and first line.

    ``start`` / ``stop``: keep only the lines from the first one containing ``start`` to the first
    one after it containing ``stop`` (both included), to show one part of a long function."""
    target = inspect.unwrap(obj)
    try:
        lines, first = inspect.getsourcelines(target)
        path = Path(inspect.getsourcefile(target) or "?")
    except (OSError, TypeError) as e:
        raise ValueError(f"no Python source for {obj!r} ({e})") from e
    lo, hi = 0, len(lines)
    if start is not None:
        lo = next((i for i, ln in enumerate(lines) if start in ln), None)
        if lo is None:
            raise ValueError(f"no line of {getattr(target, '__qualname__', obj)} contains {start!r}")
    if stop is not None:
        end = next((i for i in range(lo, len(lines)) if stop in lines[i]), None)
        if end is None:
            raise ValueError(f"no line of {getattr(target, '__qualname__', obj)} after {start!r} contains {stop!r}")
        hi = end + 1
    where = path.relative_to(path.parents[1]) if path.parent.name == "upgan_lib" else path.name
    header = f"# {where}, line {first + lo}"
    return header + "\n" + textwrap.dedent("".join(lines[lo:hi])).rstrip() + "\n"


def _in_jupyter() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def show_source(obj, start: str | None = None, stop: str | None = None) -> str:
    """Display :func:`source_of` ``obj``: a highlighted Python block in Jupyter, printed text
    elsewhere. Returns the text."""
    text = source_of(obj, start, stop)
    if _in_jupyter():
        from IPython.display import Markdown, display

        display(Markdown(f"```python\n{text}```"))
    else:
        print(text, end="")
    return text
