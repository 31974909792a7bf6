"""The chapters show the library's own code: the text is the code that runs, with where it lives."""
import inspect

import pytest

from upgan_lib import code_view as C
from upgan_lib import losses


def test_source_is_the_running_code_with_its_file_and_line():
    text = C.source_of(losses.mask_loss)
    header, body = text.split("\n", 1)
    lines, first = inspect.getsourcelines(losses.mask_loss)
    assert header == f"# upgan_lib/losses.py, line {first}"
    assert body == "".join(lines).rstrip() + "\n" and body.startswith("def mask_loss(")
    method = C.source_of(losses.UPGANLoss.generator_loss)
    assert method.split("\n")[1].startswith("def generator_loss(")  # dedented out of its class


def test_a_part_of_a_function_between_two_lines():
    lines, first = inspect.getsourcelines(losses.UPGANLoss.generator_loss)
    i = next(k for k, ln in enumerate(lines) if '"l2" in self.enabled' in ln)
    part = C.source_of(losses.UPGANLoss.generator_loss, start='"l2" in self.enabled', stop="l2_loss(")
    assert part.splitlines()[0] == f"# upgan_lib/losses.py, line {first + i}"
    assert part.splitlines()[1:] == [lines[i].strip(), "    " + lines[i + 1].strip()]
    with pytest.raises(ValueError, match="contains 'no such line'"):
        C.source_of(losses.mask_loss, start="no such line")
    with pytest.raises(ValueError, match="no Python source"):
        C.source_of(len)


def test_printed_outside_jupyter_and_a_code_block_inside(capsys, monkeypatch):
    text = C.show_source(losses.l2_loss)
    assert capsys.readouterr().out == text and "def l2_loss(" in text
    shown = []

    class Kernel:
        config = {"IPKernelApp": {}}

    import IPython
    import IPython.display

    monkeypatch.setattr(IPython, "get_ipython", lambda: Kernel())
    monkeypatch.setattr(IPython.display, "display", shown.append)
    C.show_source(losses.l2_loss)
    assert capsys.readouterr().out == ""
    assert shown[0].data == f"```python\n{text}```"
