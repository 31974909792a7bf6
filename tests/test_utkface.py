"""UTKFace file names -> labels, the five malformed names, listing folders and archives."""
from __future__ import annotations

import zipfile

import pytest
from conftest import real_archive
from data_helpers import UTK_MALFORMED, make_tar_gz

from upgan_lib.rawfiles import RawSource
from upgan_lib.utkface import list_utkface, parse_utkface_name, utkface_folder


def test_parse_wellformed_name():
    lab = parse_utkface_name("UTKFace/26_1_2_20170116174525125.jpg.chip.jpg")
    assert (lab.age, lab.gender, lab.race, lab.status, lab.usable) == (26, 1, 2, "ok", True)
    assert lab.name == "UTKFace/26_1_2_20170116174525125.jpg.chip.jpg"


@pytest.mark.parametrize("name, labels, note", [
    (UTK_MALFORMED[0], (24, 0, 1), "space"),
    (UTK_MALFORMED[1], (55, 0, 0), "dot missing"),
])
def test_damaged_separators_are_repaired(name, labels, note):
    lab = parse_utkface_name(name)
    assert lab.status == "repaired" and lab.usable
    assert (lab.age, lab.gender, lab.race) == labels
    assert note in lab.note


@pytest.mark.parametrize("name", UTK_MALFORMED[2:])
def test_missing_race_is_skipped_with_reason(name):
    lab = parse_utkface_name(name)
    assert lab.status == "race_missing" and not lab.usable
    assert lab.race == -1 and lab.age > 0
    assert "race" in lab.note


@pytest.mark.parametrize("name, status", [
    ("holiday.jpg", "bad_name"),
    ("26_1.jpg", "bad_name"),
    ("200_0_0_20170116174525125.jpg.chip.jpg", "bad_label"),  # age > 116
    ("26_2_0_20170116174525125.jpg.chip.jpg", "bad_label"),  # gender 2
    ("26_0_5_20170116174525125.jpg.chip.jpg", "bad_label"),  # race 5
])
def test_unusable_names(name, status):
    lab = parse_utkface_name(name)
    assert lab.status == status and not lab.usable and lab.note


def test_loose_variant_names_are_read():
    lab = parse_utkface_name("crop_part1/45_1_3_20170119.jpg")
    assert (lab.age, lab.gender, lab.race, lab.status) == (45, 1, 3, "ok")


def _write(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"x")


def test_list_folder_and_archive_agree(tmp_path):
    names = ["1_0_0_20170110000000000.jpg.chip.jpg", "90_1_4_20170110000000001.jpg.chip.jpg", *UTK_MALFORMED]
    _write(tmp_path / "src" / "UTKFace", names)
    (tmp_path / "src" / "UTKFace" / "notes.txt").write_text("hi")
    a = list_utkface(tmp_path / "src")
    b = list_utkface(make_tar_gz(tmp_path / "src" / "UTKFace", tmp_path / "UTKFace.tar.gz"))
    assert [x.name for x in a.labels] == [x.name for x in b.labels]
    assert len(a.labels) == 7 and a.ignored == ["UTKFace/notes.txt"]
    st = a.by_status()
    assert len(st["ok"]) == 2 and len(st["repaired"]) == 2 and len(st["race_missing"]) == 3
    assert len(a.usable()) == 4


def test_kaggle_zip_layout_uses_only_the_utkface_folder(tmp_path):
    z = tmp_path / "utkface-new.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("UTKFace/1_0_0_20170110000000000.jpg.chip.jpg", b"x")
        f.writestr("crop_part1/1_0_0_20170110000000000.jpg.chip.jpg", b"x")
        f.writestr("utkface_aligned_cropped/UTKFace/1_0_0_20170110000000000.jpg.chip.jpg", b"x")
    listing = list_utkface(RawSource(z))
    assert [x.name for x in listing.labels] == ["UTKFace/1_0_0_20170110000000000.jpg.chip.jpg"]
    assert len(listing.ignored) == 2
    assert utkface_folder(["a/UTKFace/x.jpg", "UTKFace/y.jpg"]) == "UTKFace/"
    assert utkface_folder(["x.jpg"]) is None


def test_flat_folder_without_utkface_dir(tmp_path):
    _write(tmp_path / "faces", ["3_0_1_20170110000000000.jpg.chip.jpg"])
    assert [x.age for x in list_utkface(tmp_path / "faces").labels] == [3]


@pytest.mark.real_data
def test_real_archive_names():
    listing = list_utkface(real_archive("UTKFace.tar.gz"))
    st = listing.by_status()
    assert len(listing.labels) == 22000
    assert sorted(x.name.split("/")[-1] for x in st["repaired"]) == sorted(UTK_MALFORMED[:2])
    assert sorted(x.name.split("/")[-1] for x in st["race_missing"]) == sorted(UTK_MALFORMED[2:])
    assert set(st) == {"ok", "repaired", "race_missing"}
    ages = [x.age for x in listing.usable()]
    assert min(ages) >= 1 and max(ages) <= 116
