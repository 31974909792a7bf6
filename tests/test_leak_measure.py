"""How `upgan_lib.leak.measure` counts, on drawn photos and stand-ins: a face left as it was, a
face still the same person, and a match on a box that is all fail-closed grey, counted apart."""
from types import SimpleNamespace

import numpy as np
import pytest

from upgan_lib.leak import BLANK, Case, blank_distance, grey_fraction, measure
from upgan_lib.swap import grey_checker


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
    """Stand-in recogniser: a face turned bright is another person; anything else, a greyed-out
    square included, is still the same person."""

    SAME_PERSON = 0.6

    def descriptor(self, rgb, box):
        x0, y0, x1, y1 = box
        return np.array([float(rgb[y0:y1, x0:x1].mean() > 200)])


def test_grey_fraction_counts_the_fill_exactly():
    img = grey_checker(10, 10, 2)  # the fail-closed fill's two greys
    img[:5, :, 0] += 1  # no longer grey
    assert grey_fraction(img, (0, 0, 10, 10)) == 0.5
    assert grey_fraction(img, (-5, 5, 20, 20)) == 1.0  # clamped to the photo
    assert grey_fraction(img, (20, 20, 30, 30)) == 0.0
    flat = np.full((10, 10, 3), 128, np.uint8)
    assert grey_fraction(flat, (0, 0, 10, 10)) == 0.0 and grey_fraction(flat, (0, 0, 10, 10), (128, 128)) == 1.0


def test_measure_counts_unchanged_same_person_and_grey_matches_apart():
    rgb = np.full((100, 300, 3), 60, np.uint8)
    boxes = [(0, 0, 100, 100), (100, 0, 200, 100), (200, 0, 300, 100)]
    fills = [(boxes[0], None),  # left as it was: unchanged, and the same person
             (boxes[1], 192),  # greyed: the stand-in still matches it (as dlib may match a blank)
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
    assert judge_box_offsets(recs) == {"square": {"faces": 2, "centre_x": -0.025, "centre_y": -0.15,
                                                  "width": 1.0, "height": 1.0}}
    # CenterFace's tall boxes apart: here the judge's box is a square across the middle of one
    recs.append({"box": [100, 120, 200, 220], "obscurer_box": [100, 100, 200, 240]})
    assert judge_box_offsets(recs)["tall"] == {"faces": 1, "centre_x": 0.0, "centre_y": 0.0,
                                               "width": 1.0, "height": round(100 / 140, 3)}
    assert judge_box_offsets(recs)["square"]["faces"] == 2
    assert judge_box_offsets([{"box": [0, 0, 1, 1]}]) == {}


def test_known_judge_boxes_are_reused_and_checked_against_the_judge():
    from upgan_lib.leak import KnownBoxes, photo_cases

    calls = []

    def judge(rgb):
        calls.append(rgb)
        return [(1.0, 2.0, 30.0, 40.0)] if rgb.mean() > 0 else []

    lit, dark = np.full((50, 50, 3), 9, np.uint8), np.zeros((50, 50, 3), np.uint8)
    known = KnownBoxes({"lit": [[1, 2, 30, 40]], "dark": []}, recheck_every=2)
    cases = photo_cases([("lit", lit), ("dark", dark), ("lit", lit), ("new", lit)], judge, known)
    assert [c.boxes for c in cases] == [[(1.0, 2.0, 30.0, 40.0)], [], [(1.0, 2.0, 30.0, 40.0)], [(1.0, 2.0, 30.0, 40.0)]]
    # the 1st and 3rd known photo judged again, the new one judged: 3 runs of the judge, not 4
    assert (known.used, known.rechecked, len(calls)) == (3, 2, 3)
    # boxes from another judge stop the run
    wrong = KnownBoxes({"lit": [[5, 2, 30, 40]]}, recheck_every=1)
    with pytest.raises(ValueError, match="another judge"):
        photo_cases([("lit", lit)], judge, wrong)


class DarkOrBright:
    """Stand-in recogniser: reads only whether a box is dark, and whether it is bright; a
    mid-grey face reads as the checkerboard does (as dlib reads some faces near its average)."""

    SAME_PERSON = 0.6

    def descriptor(self, rgb, box):
        x0, y0, x1, y1 = box
        m = rgb[y0:y1, x0:x1].mean()
        return np.array([float(m < 30), float(m > 200)])


def test_a_match_the_judge_also_makes_with_a_blank_photo_is_counted_apart():
    rgb = np.full((100, 300, 3), 60, np.uint8)
    rgb[:, :100] = 20  # a face the recogniser tells from a blank
    boxes = [(0, 0, 100, 100), (100, 0, 200, 100), (200, 0, 300, 100)]
    assert blank_distance(DarkOrBright(), rgb, boxes[0]) == 1.0 and blank_distance(DarkOrBright(), rgb, boxes[1]) == 0.0
    fills = [(boxes[0], None), (boxes[1], None), (boxes[2], 250)]  # two left, one another person
    res = measure([Case("p", rgb, boxes)], Recolour(fills), DarkOrBright())
    assert [x.get("blank_distance") for x in res.records] == [1.0, 0.0, None]  # read for matches only
    r = res.summary()
    assert (r["same_person"], r["same_person_like_blank"]) == (2, 1)

