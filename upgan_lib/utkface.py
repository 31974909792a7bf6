"""UTKFace: labels from file names, the known malformed names, and listing the archive or folder.

UTKFace ("Aligned & Cropped Faces", ``UTKFace.tar.gz``) holds 200x200 JPEGs named
``<age>_<gender>_<race>_<date&time>.jpg.chip.jpg``:

* age: 0-116 years;
* gender: 0 male, 1 female;
* race: 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others (see ``upgan_lib.utility``);
* date&time: when the photo was collected (``yyyymmddHHMMSSFFF``), unused.

Five names of the official release are malformed. What this loader does with each (every one is
reported by name in the prepare report):

========================================  ====================  ================================
name                                      problem               decision
========================================  ====================  ================================
``24_0_1_20170116220224657 .jpg.chip.jpg``  space before .jpg     repaired: labels read, kept
``55_0_0_20170116232725357jpg.chip.jpg``    dot missing           repaired: labels read, kept
``39_1_20170116174525125.jpg.chip.jpg``     race field missing    skipped (``race_missing``)
``61_1_20170109142408075.jpg.chip.jpg``     race field missing    skipped (``race_missing``)
``61_1_20170109150557335.jpg.chip.jpg``     race field missing    skipped (``race_missing``)
========================================  ====================  ================================

Why skip rather than keep with ``race = -1``: race is one of the three attributes in every
utility vector the generator is trained on, so a face without it cannot be a training example
(``FaceSet.utility`` refuses unknown labels), and guessing it would add label noise. Three of
22,000 images is 0.014 % of the data. (The first two are unambiguous: only the separator is
damaged, all three label fields are present.)

Any other name that does not parse, or whose fields are out of range, is skipped with the reason
``bad_name`` / ``bad_label`` and named in the report.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from .rawfiles import RawSource, is_image_name

MAX_AGE = 116
N_RACES = 5

#: The official name, plus the two damaged separators seen in the release (space, missing dot).
_NAME = re.compile(r"^(?P<age>\d+)_(?P<gender>\d+)_(?P<race>\d+)_(?P<time>\d+)(?P<sep>\.| \.|)jpg\.chip\.jpg$")
#: Three fields only: age_gender_time (race missing).
_NO_RACE = re.compile(r"^(?P<age>\d+)_(?P<gender>\d+)_(?P<time>\d{17})\.jpg\.chip\.jpg$")
#: Plain ``age_gender_race_anything.jpg`` (other UTKFace variants, e.g. the Kaggle "crop_part1" folder).
_LOOSE = re.compile(r"^(?P<age>\d+)_(?P<gender>\d+)_(?P<race>\d+)(?:_[^/]*)?\.(?:jpg|jpeg|png)$", re.IGNORECASE)


@dataclass(frozen=True)
class UTKLabel:
    """Labels parsed from one file name. ``status`` is ``"ok"``, ``"repaired"`` (labels read from a
    damaged name; ``note`` says what was wrong), or a skip reason: ``"race_missing"``,
    ``"bad_name"``, ``"bad_label"`` (then ``note`` explains and the labels are -1)."""

    name: str
    age: int
    gender: int
    race: int
    status: str
    note: str = ""

    @property
    def usable(self) -> bool:
        return self.status in ("ok", "repaired")


def parse_utkface_name(name: str) -> UTKLabel:
    """Labels of one UTKFace file (the base name is used; folders in ``name`` are ignored)."""
    base = PurePosixPath(name).name
    m = _NAME.match(base)
    status, note = "ok", ""
    if m is None:
        m2 = _NO_RACE.match(base)
        if m2 is not None:
            return UTKLabel(name, int(m2["age"]), int(m2["gender"]), -1, "race_missing",
                            "the race field is missing (age_gender_datetime); skipped because every utility vector needs race")
        m = _LOOSE.match(base)
        if m is None:
            return UTKLabel(name, -1, -1, -1, "bad_name",
                            "the name is not <age>_<gender>_<race>_<datetime>.jpg.chip.jpg, so it carries no labels")
    elif m["sep"] == " .":
        status, note = "repaired", "space before '.jpg' in the name; labels read from the fields"
    elif m["sep"] == "":
        status, note = "repaired", "dot missing before 'jpg' in the name; labels read from the fields"
    age, gender, race = int(m["age"]), int(m["gender"]), int(m["race"])
    problems = []
    if not 0 <= age <= MAX_AGE:
        problems.append(f"age {age} outside 0-{MAX_AGE}")
    if gender not in (0, 1):
        problems.append(f"gender {gender} is neither 0 (male) nor 1 (female)")
    if not 0 <= race < N_RACES:
        problems.append(f"race {race} outside 0-{N_RACES - 1}")
    if problems:
        return UTKLabel(name, -1, -1, -1, "bad_label", "; ".join(problems))
    return UTKLabel(name, age, gender, race, status, note)


@dataclass
class UTKListing:
    """The image files of a UTKFace source with their parsed labels, in name order, and the
    non-image files that were ignored (e.g. a README)."""

    labels: list[UTKLabel]
    ignored: list[str]

    def usable(self) -> list[UTKLabel]:
        return [lab for lab in self.labels if lab.usable]

    def by_status(self) -> dict[str, list[UTKLabel]]:
        out: dict[str, list[UTKLabel]] = {}
        for lab in self.labels:
            out.setdefault(lab.status, []).append(lab)
        return out


def utkface_folder(names: list[str]) -> str | None:
    """The shallowest folder named ``UTKFace`` that directly holds images, or None.

    The Kaggle mirror's zip holds ``UTKFace/`` next to other crops of the same photos
    (``crop_part1/``, ``utkface_aligned_cropped/``); only ``UTKFace/`` is the aligned set.
    """
    best = None
    for n in names:
        parts = PurePosixPath(n).parts
        if len(parts) >= 2 and parts[-2] == "UTKFace" and is_image_name(n):
            folder = "/".join(parts[:-1]) + "/"
            if best is None or (folder.count("/"), folder) < (best.count("/"), best):
                best = folder
    return best


def list_utkface(source: RawSource | str) -> UTKListing:
    """Every image file in a UTKFace archive or folder, labelled from its name.

    If the source holds a ``UTKFace/`` folder (the official archive, the Kaggle zip), only the
    images directly in it are inputs; any other file is listed in ``ignored``.
    """
    src = source if isinstance(source, RawSource) else RawSource(source)
    names = [e.name for e in src.list()]
    folder = utkface_folder(names)
    labels, ignored = [], []
    for n in names:
        inside = folder is None or (n.startswith(folder) and "/" not in n[len(folder):])
        (labels if inside and is_image_name(n) else ignored).append(n)
    return UTKListing([parse_utkface_name(n) for n in labels], ignored)


# ---------------------------------------------------------------------------- a synthetic stand-in
def write_synthetic_utkface(folder, n_faces: int = 24, seed: int = 0, problems: bool = True):
    """Write a UTKFace-layout folder ``folder/UTKFace/`` drawn from SynthFaces, for the smoke preset and demos.

    Each face is a SynthFaces drawing cropped and enlarged to 200x200 like UTKFace's crops and named
    ``<age>_<gender>_<race>_<datetime>.jpg.chip.jpg`` from its labels. With ``problems``, the folder
    also holds what the real pipeline must cope with: the five malformed names of the official
    release, a file that is not an image, a truncated JPEG, a grey-scale JPEG, an RGBA PNG, a
    picture without a face and a README. Returns ``folder``.
    """
    import io
    from pathlib import Path

    import cv2
    import numpy as np
    from PIL import Image

    from .synthfaces import make_synthfaces

    folder = Path(folder)
    out = folder / "UTKFace"
    out.mkdir(parents=True, exist_ok=True)
    extra = 7 if problems else 0
    fs = make_synthfaces(n_identities=n_faces + extra, photos_per_identity=1, seed=seed)

    def crop(i):
        return cv2.resize(np.ascontiguousarray(fs.faces[i][14:114, 14:114]), (200, 200), interpolation=cv2.INTER_CUBIC)

    def save(img, name, fmt="JPEG"):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
        (out / name).write_bytes(buf.getvalue())
        return buf.getvalue()

    for i in range(n_faces):
        save(crop(i), f"{fs.age[i]}_{fs.gender[i]}_{fs.race[i]}_2017011612{i:07d}.jpg.chip.jpg")
    if problems:
        malformed = ("24_0_1_20170116220224657 .jpg.chip.jpg", "55_0_0_20170116232725357jpg.chip.jpg",
                     "39_1_20170116174525125.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg",
                     "61_1_20170109150557335.jpg.chip.jpg")
        for j, name in enumerate(malformed):
            save(crop(n_faces + j), name)
        (out / "30_0_0_20170116000000001.jpg.chip.jpg").write_bytes(b"<html>404 Not Found</html>")
        whole = save(crop(n_faces + 5), "31_1_0_20170116000000002.jpg.chip.jpg")
        (out / "31_1_0_20170116000000002.jpg.chip.jpg").write_bytes(whole[: len(whole) // 2])
        save(cv2.cvtColor(crop(n_faces + 6), cv2.COLOR_RGB2GRAY), "32_0_2_20170116000000003.jpg.chip.jpg")
        rgba = np.dstack([crop(0), np.full((200, 200), 255, np.uint8)])
        save(rgba, "33_1_3_20170116000000004.png", "PNG")
        sky = np.linspace(60, 220, 200, dtype=np.float32)[:, None, None] * np.array([0.6, 0.8, 1.0], np.float32)
        save(np.broadcast_to(sky, (200, 200, 3)).astype(np.uint8), "34_0_4_20170116000000005.jpg.chip.jpg")
        (out / "README.txt").write_text("SynthFaces drawings in UTKFace's layout (not real people).\n")
    return folder
