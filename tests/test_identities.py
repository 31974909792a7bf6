"""Identity listings: CelebA identity file and folder-per-identity layouts, from folders and archives."""
from __future__ import annotations

import pytest
from conftest import real_archive
from data_helpers import make_tar_gz

from upgan_lib.identities import list_identity_photos, parse_identity_file
from upgan_lib.rawfiles import SourceError


def test_parse_identity_file_header_comments_and_bad_lines():
    pairs, bad = parse_identity_file("image identity\n000001.jpg 2880\n\n# note\n000002.jpg\n000003.jpg 7\n")
    assert pairs == [("000001.jpg", 2880), ("000003.jpg", 7)]
    assert bad == [(5, "000002.jpg")]
    pairs, bad = parse_identity_file("000001.jpg 2880\n")  # the official file has no header
    assert pairs == [("000001.jpg", 2880)] and bad == []


def _touch(p, data=b"x"):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def _celeba(root):
    base = root / "celeba-identities"
    for n in ("000001.jpg", "000002.jpg", "000003.jpg", "000099.jpg"):
        _touch(base / "img_celeba" / n)
    (base / "identity_CelebA.txt").write_text(
        "image identity\n000002.jpg 5\n000001.jpg 5\n000003.jpg 2\n000004.jpg 2\nbroken\n000001.jpg 9\n")
    return base


@pytest.mark.parametrize("as_archive", [False, True])
def test_celeba_layout(tmp_path, as_archive):
    base = _celeba(tmp_path / "src")
    src = make_tar_gz(base, tmp_path / "celeba-identities.tar.gz") if as_archive else tmp_path / "src"
    listing = list_identity_photos(src)
    assert listing.layout == "celeba"
    assert listing.identity_file == "celeba-identities/identity_CelebA.txt"
    got = [(p.name.split("/")[-1], p.identity, p.problem) for p in listing.photos]
    # sorted by identity then name; the missing photo is an input with a reason
    assert got == [("000003.jpg", 2, None), ("000004.jpg", 2, "missing_file"), ("000001.jpg", 5, None),
                   ("000002.jpg", 5, None)]
    assert [p.name for p in listing.usable()][0] == "celeba-identities/img_celeba/000003.jpg"
    assert "not present" in listing.problems()["missing_file"][0].message
    assert listing.unlisted == ["celeba-identities/img_celeba/000099.jpg"]
    assert [ln for ln, _ in listing.bad_lines] == [6, 0]  # the broken line, then the duplicate
    assert listing.counts_per_identity() == {2: 1, 5: 2}


def test_celeba_without_photo_folder(tmp_path):
    (tmp_path / "identity_CelebA.txt").write_text("000001.jpg 1\n")
    with pytest.raises(SourceError, match="img_celeba"):
        list_identity_photos(tmp_path)


def test_folder_layout_with_wrapper_and_loose_file(tmp_path):
    for who, photos in {"Zoe_Z": ["1.jpg", "2.png"], "Adam_A": ["x.jpg"]}.items():
        for ph in photos:
            _touch(tmp_path / "lfw" / "lfw" / who / ph)
    _touch(tmp_path / "lfw" / "lfw" / "stray.jpg")
    _touch(tmp_path / "lfw" / "lfw" / "Adam_A" / "notes.txt")
    listing = list_identity_photos(tmp_path / "lfw")
    assert listing.layout == "folders"
    assert listing.identity_names == {0: "Adam_A", 1: "Zoe_Z"}
    assert [(p.name, p.identity) for p in listing.usable()] == [
        ("lfw/Adam_A/x.jpg", 0), ("lfw/Zoe_Z/1.jpg", 1), ("lfw/Zoe_Z/2.png", 1)]
    assert [p.name for p in listing.problems()["not_in_identity_folder"]] == ["lfw/stray.jpg"]
    assert listing.photos[-1].identity == -1  # unknown identities sort last


def test_no_images_is_a_clear_error(tmp_path):
    _touch(tmp_path / "readme.txt")
    with pytest.raises(SourceError, match="no images"):
        list_identity_photos(tmp_path)


def test_only_loose_images_is_a_clear_error(tmp_path):
    _touch(tmp_path / "a.jpg")
    with pytest.raises(SourceError, match="no identity folders"):
        list_identity_photos(tmp_path)


@pytest.mark.real_data
def test_real_identity_archive_listing():
    listing = list_identity_photos(real_archive("celeba-identities.tar.gz"))
    assert listing.layout == "celeba"
    assert len(listing.usable()) == 3789 and not listing.problems()
    counts = listing.counts_per_identity()
    assert len(counts) == 160 and min(counts.values()) >= 10 and max(counts.values()) <= 30
