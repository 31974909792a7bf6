"""How `upgan_lib.leak.measure` counts, on drawn photos and stand-ins: a face left as it was, a
face still the same person, and a match on a box that is all flat grey, counted apart."""
from types import SimpleNamespace

import numpy as np

from upgan_lib.leak import BLANK, Case, grey_fraction, measure


class Recolour:
    """Stand-in obscurer: fills each box of ``fills`` with its colour (None: leaves it)."""

    def __init__(self, fills):
        self.fills = fills

    def obscure(self, rgb):
        out = rgb.copy()
        for (x0, y0, x1, y1), colour in self.fills:
            if colour is not None:
                out[y0:y1, x0:x1] = colour
        return SimpleNamespace(image=out, faces=[{"action": "greyed", "box": list(b)} for b, c in self.fills if c])


class BrightIsAnother:
    """Stand-in recogniser: a face turned bright is another person; anything else, a flat grey
    square included, is still the same person."""

    SAME_PERSON = 0.6

    def descriptor(self, rgb, box):
        x0, y0, x1, y1 = box
        return np.array([float(rgb[y0:y1, x0:x1].mean() > 200)])


def test_grey_fraction_counts_exact_grey_only():
    img = np.full((10, 10, 3), 128, np.uint8)
    img[:5] = 127
    assert grey_fraction(img, (0, 0, 10, 10)) == 0.5
    assert grey_fraction(img, (-5, 5, 20, 20)) == 1.0  # clamped to the photo
    assert grey_fraction(img, (20, 20, 30, 30)) == 0.0


def test_measure_counts_unchanged_same_person_and_grey_matches_apart():
    rgb = np.full((100, 300, 3), 60, np.uint8)
    boxes = [(0, 0, 100, 100), (100, 0, 200, 100), (200, 0, 300, 100)]
    fills = [(boxes[0], None),  # left as it was: unchanged, and the same person
             (boxes[1], 128),  # greyed: the stand-in still matches it (as dlib may match a blank)
             (boxes[2], 250)]  # changed to another person
    res = measure([Case("p", rgb, boxes)], Recolour(fills), BrightIsAnother())
    assert [x.get("obscurer_box") for x in res.records] == [None, list(boxes[1]), list(boxes[2])]
    r = res.summary()
    assert (r["judge_faces"], r["left_unchanged"], r["same_person"], r["same_person_on_grey"]) == (3, 1, 2, 1)
    assert r["same_person_rate_not_grey"] == 1 / 3
    assert BLANK <= 1.0


def test_judge_box_offsets_are_medians_against_the_matching_obscurer_box():
    from upgan_lib.leak import judge_box_offsets

    recs = [{"box": [95, 80, 195, 180], "obscurer_box": [100, 100, 200, 200]},  # left 5 %, up 20 %
            {"box": [0, 0, 10, 10]},  # no face of the obscurer's matched this one
            {"box": [100, 90, 200, 190], "obscurer_box": [100, 100, 200, 200]}]  # up 10 %
    assert judge_box_offsets(recs) == {"faces": 2, "centre_x": -0.025, "centre_y": -0.15, "width": 1.0, "height": 1.0}
    assert judge_box_offsets([{"box": [0, 0, 1, 1]}]) is None
