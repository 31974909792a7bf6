"""Raw sources (folder / tar.gz / zip) and image decoding with clear reasons."""
from __future__ import annotations

import gzip
import io
import tarfile
import zipfile

import numpy as np
import pytest
from data_helpers import jpeg_bytes, png_bytes
from PIL import Image

from upgan_lib.rawfiles import BadImage, RawSource, SourceError, decode_image


def _img(h=40, w=30):
    return (np.arange(h * w * 3) % 251).astype(np.uint8).reshape(h, w, 3)


def test_decode_rgb_jpeg_and_png():
    rgb, notes = decode_image(png_bytes(_img()), "a.png")
    assert rgb.shape == (40, 30, 3) and rgb.dtype == np.uint8 and notes == [] and rgb.flags.c_contiguous
    assert np.array_equal(rgb, _img())
    rgb, _ = decode_image(jpeg_bytes(_img()), "a.jpg")
    assert rgb.shape == (40, 30, 3)


@pytest.mark.parametrize("mode, note", [("L", "grayscale"), ("RGBA", "alpha_dropped"), ("LA", "alpha_dropped"),
                                        ("P", "palette"), ("I;16", "grayscale")])
def test_decode_converts_other_modes(mode, note):
    im = Image.fromarray(_img()).convert(mode) if mode != "I;16" else Image.fromarray(
        (np.arange(1200).reshape(40, 30) * 50).astype(np.uint16))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    rgb, notes = decode_image(buf.getvalue(), "x.png")
    assert rgb.shape == (40, 30, 3) and note in notes


def test_decode_cmyk_jpeg():
    buf = io.BytesIO()
    Image.fromarray(_img()).convert("CMYK").save(buf, format="JPEG")
    rgb, notes = decode_image(buf.getvalue(), "c.jpg")
    assert rgb.shape == (40, 30, 3) and "cmyk" in notes


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"GIF89a not really", "corrupt"),
    (b"\x00" * 100, "corrupt"),
])
def test_decode_bad_bytes(data, reason):
    with pytest.raises(BadImage) as e:
        decode_image(data, "bad.jpg")
    assert e.value.reason == reason and "bad.jpg" in str(e.value)


def test_decode_truncated_jpeg_names_file():
    whole = jpeg_bytes(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    with pytest.raises(BadImage) as e:
        decode_image(whole[: len(whole) // 2], "half.jpg")
    assert e.value.reason == "truncated" and "half.jpg" in str(e.value)


def test_decode_too_small_and_downscale():
    with pytest.raises(BadImage, match="too small"):
        decode_image(png_bytes(_img(4, 4)), "tiny.png")
    rgb, notes = decode_image(png_bytes(_img(400, 200)), "big.png", max_side=100)
    assert rgb.shape == (100, 50, 3) and "downscaled" in notes


def _fill(root):
    (root / "d").mkdir(parents=True)
    (root / "d" / "b.jpg").write_bytes(b"bb")
    (root / "a.txt").write_bytes(b"a")
    (root / ".hidden").write_bytes(b"h")


def test_folder_tar_zip_list_and_read_alike(tmp_path):
    _fill(tmp_path / "src")
    tgz = tmp_path / "s.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        t.add(tmp_path / "src", arcname="src")
    z = tmp_path / "s.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("src/a.txt", b"a")
        f.writestr("src/d/b.jpg", b"bb")
        f.writestr("__MACOSX/src/._a.txt", b"junk")
    folder = RawSource(tmp_path / "src")
    assert folder.kind == "folder" and [e.name for e in folder.list()] == ["a.txt", "d/b.jpg"]
    for src in (RawSource(tgz), RawSource(z)):
        assert [(e.name, e.size) for e in src.list()] == [("src/a.txt", 1), ("src/d/b.jpg", 2)]
        got = dict(src.read_many(["src/d/b.jpg", "src/missing.jpg", "src/a.txt"]))
        assert got["src/d/b.jpg"] == b"bb" and got["src/a.txt"] == b"a"
        assert isinstance(got["src/missing.jpg"], FileNotFoundError)
    assert folder.read("d/b.jpg") == b"bb"
    got = dict(folder.read_many(["nope.jpg", "../outside.jpg"]))
    assert all(isinstance(v, OSError) for v in got.values())


def test_fingerprint_changes_with_content(tmp_path):
    _fill(tmp_path / "src")
    a = RawSource(tmp_path / "src").fingerprint()
    assert a == RawSource(tmp_path / "src").fingerprint()
    (tmp_path / "src" / "d" / "c.jpg").write_bytes(b"c")
    assert RawSource(tmp_path / "src").fingerprint() != a


def test_source_errors_name_the_path(tmp_path):
    with pytest.raises(SourceError, match="no such file or folder"):
        RawSource(tmp_path / "nothing.tar.gz")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="not a folder nor"):
        RawSource(tmp_path / "notes.txt")
    bad = tmp_path / "broken.tar.gz"
    bad.write_bytes(gzip.compress(b"\x00" * 10)[:12])
    with pytest.raises(SourceError, match="broken.tar.gz"):
        RawSource(bad).list()


def test_truncated_archive_while_reading(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"{i}.bin").write_bytes(rng.integers(0, 255, 50_000, dtype=np.uint8).tobytes())
    tgz = tmp_path / "t.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        t.add(src, arcname="src")
    data = tgz.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match="cut.tar.gz"):
        s = RawSource(cut)
        list(s.read_many([f"src/{i}.bin" for i in range(6)]))
