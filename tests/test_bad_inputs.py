"""Bad inputs, fuzz-style: every one gives a clear error or a report entry, nothing outside OUTPUT
is written, and no input file changes (checksums before and after).

`upgan obscure`: output inside the input (and the reverse), two runs sharing a folder, a non-UTF-8
file name, dangling links, FIFOs, unreadable folders, links to folders, non-images, broken and
oversized images, a stale output of an earlier run, damaged generator checkpoints, a gallery whose
arrays are objects. `upgan prepare`: duplicated archive members, oversized members and images.
"""
import hashlib
import io
import json
import os
import tarfile
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from upgan_lib import imagefile, obscure_cli, rawfiles
from upgan_lib import obscure as ob
from upgan_lib.obscure import ObscureConfig, ObscureError, Obscurer, obscure_path


def snapshot(root: Path, exclude: Path | None = None) -> dict:
    """path -> sha256 (or the link target / kind) of everything under root, without following links."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if exclude is not None and (d == exclude or exclude in d.parents):
            continue
        for n in dirnames + filenames:
            p = d / n
            if exclude is not None and p == exclude:
                continue
            if p.is_symlink():
                out[str(p)] = "link->" + os.readlink(p)
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif not p.is_dir():
                out[str(p)] = "special"
            else:
                out[str(p)] = "dir"
    return out


class NoFaces:
    full_resolution = True

    def detect(self, rgb):
        return []


class OneBox:
    """One face box in the middle, without landmarks: greyed (fail closed)."""

    full_resolution = True

    def detect(self, rgb):
        h, w = rgb.shape[:2]
        return [ob.FoundFace((w * 0.4, h * 0.4, w * 0.6, h * 0.6), None, 1.0, "test")]


def photo(seed=0, size=(64, 48)):
    return np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)


@pytest.fixture
def messy(tmp_path):
    """An input folder holding every kind of trouble, and the rest of tmp_path as 'outside'."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(photo(0)).save(src / "a.png")
    Image.fromarray(photo(1)).save(src / "sub" / "b.jpg", quality=90)
    Image.fromarray(photo(2)).save(os.fsdecode(bytes(src / "sub") + b"/caf\xe9.png"))  # not UTF-8
    (src / "notes.txt").write_text("not an image")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (src / "dead.jpg").symlink_to(tmp_path / "nowhere.jpg")
    os.mkfifo(src / "pipe.jpg")
    (src / "linked").symlink_to(src / "sub")
    (src / ".hidden.png").write_bytes(b"x")
    locked = src / "locked"
    locked.mkdir()
    Image.fromarray(photo(3)).save(locked / "c.png")
    locked.chmod(0)
    yield src
    locked.chmod(0o755)


def _run(src, out, finder=None, **kw):
    return obscure_path(src, out, Obscurer(ObscureConfig(method="gray"), finder=finder or OneBox()), **kw)


def test_messy_folder_every_path_counted_nothing_else_touched(messy, tmp_path):
    before = snapshot(tmp_path)
    rep = _run(messy, tmp_path / "out")
    assert snapshot(tmp_path, exclude=tmp_path / "out") == before  # inputs unchanged, nothing written outside OUT
    reasons = {Path(x["path"]).name: x["reason"] for x in rep["skipped"]}
    assert reasons["notes.txt"] == "non_image" and reasons["dead.jpg"] == "dangling_link"
    assert reasons["pipe.jpg"] == "not_regular" and reasons["linked"] == "folder_link"
    assert reasons[".hidden.png"] == "hidden"
    if os.geteuid() != 0:  # root reads any folder
        assert reasons["locked"] == "unreadable_folder"
    s = rep["summary"]
    assert s["skipped_files"] == len(rep["skipped"]) and sum(s["skipped_by_reason"].values()) == len(rep["skipped"])
    names = {Path(e["input"]).name: e for e in rep["images"]}
    assert "caf\\xe9.png" in names and names["caf\\xe9.png"]["output"]  # written, shown printable
    assert "not a readable image" in names["broken.jpg"]["error"]
    json.dumps(rep)


def test_cli_prints_non_utf8_names_and_reasons(messy, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Obscurer, "finder", property(lambda self: OneBox()))
    args = Namespace(input=str(messy), output=str(tmp_path / "out"), method="gray", checkpoint=None, attributes=None,
                     gallery=None, report=str(tmp_path / "out" / "r.json"), strength=15, blend="poisson",
                     detect_max_side=1280, device="cpu", overwrite=False, quiet=False, threads=1, precision="fp32",
                     detectors="hog", no_rotations=True, strict=False)
    assert obscure_cli.run(args) == 1  # broken.jpg failed
    out = capsys.readouterr()
    assert "caf\\xe9.png" in out.out and "broken.jpg: FAILED" in out.err
    assert "link to nothing" in out.out and "not a regular file" in out.out and "non-image" not in out.out


@pytest.mark.parametrize("nest", ["out_in_in", "in_in_out", "same"])
def test_nested_input_and_output_are_refused(messy, tmp_path, nest):
    src, out = {"out_in_in": (messy, messy / "sub"), "in_in_out": (messy / "sub", messy),
                "same": (messy, messy / "." / "")}[nest]
    before = snapshot(tmp_path)
    with pytest.raises(ObscureError, match="input folder"):
        _run(src, out, overwrite=True)
    assert snapshot(tmp_path) == before


def test_two_runs_share_a_folder_without_touching_each_others_files(messy, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    other = {out / ".a.png.tmp": b"another run's old-style temporary", out / ".a.png.x1y2.tmp": b"another run's"}
    for p, data in other.items():
        p.write_bytes(data)
    _run(messy, out)
    _run(messy, out, overwrite=True)
    for p, data in other.items():
        assert p.read_bytes() == data
    assert not [p for p in out.rglob("*.tmp") if p not in other]


def test_stale_output_of_an_earlier_run_is_kept_and_reported(messy, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "broken.jpg").write_bytes(b"an older output")
    rep = _run(messy, out, overwrite=True)
    e = next(x for x in rep["images"] if x["input"].endswith("broken.jpg"))
    assert "error" in e and "not an output of this run" in e["stale_output"]
    assert (out / "broken.jpg").read_bytes() == b"an older output"


def test_oversized_image_is_refused_by_pixels(tmp_path, monkeypatch):
    Image.fromarray(photo(0, (200, 100))).save(tmp_path / "big.png")
    monkeypatch.setattr(imagefile, "MAX_PIXELS", 10_000)
    rep = _run(tmp_path / "big.png", tmp_path / "o.png")
    assert "more than this command handles" in rep["images"][0]["error"] and not (tmp_path / "o.png").exists()
    monkeypatch.setattr(rawfiles, "MAX_PIXELS", 10_000)
    buf = io.BytesIO()
    Image.fromarray(photo(0, (200, 100))).save(buf, "PNG")
    with pytest.raises(rawfiles.BadImage, match="downscale it first") as e:
        rawfiles.decode_image(buf.getvalue(), "big.png")
    assert e.value.reason == "too_large"


# ---------------------------------------------------------------------------------------------
# checkpoints and galleries
# ---------------------------------------------------------------------------------------------
def _cli(tmp_path, **kw):
    Image.fromarray(photo(0)).save(tmp_path / "p.png")
    base = dict(input=str(tmp_path / "p.png"), output=str(tmp_path / "o.png"), method="upgan", checkpoint=None,
                attributes=None, gallery=None, report=None, strength=15, blend="poisson", detect_max_side=1280,
                device="cpu", overwrite=False, quiet=True, threads=1, precision="fp32", detectors="hog",
                no_rotations=True, strict=False)
    base.update(kw)
    return Namespace(**base)


def _generator_states(preset="smoke"):
    from upgan_lib.generator import Generator, GeneratorConfig

    cfg = GeneratorConfig.for_preset(preset)
    return Generator(cfg).state_dict(), cfg


@pytest.mark.parametrize("damage", ["meta_without_config", "shapes_do_not_fit", "header_without_meta"])
def test_damaged_checkpoint_is_a_clear_error(tmp_path, capsys, damage):
    from safetensors.torch import save_file

    from upgan_lib.checkpoint import save_checkpoint

    ck = tmp_path / "g.safetensors"
    states, cfg = _generator_states("smoke")
    if damage == "meta_without_config":
        save_checkpoint(ck, {"generator": states}, {"format": "upgan-generator/1"})
    elif damage == "shapes_do_not_fit":
        from upgan_lib.generator import GeneratorConfig

        big = GeneratorConfig.for_preset("full")
        save_checkpoint(ck, {"generator": states}, {"format": "upgan-generator/1", "generator_config": big.as_dict()})
    else:
        save_checkpoint(ck, {"generator": states}, {"format": "upgan-generator/1", "generator_config": cfg.as_dict()})
        from safetensors import safe_open

        with safe_open(str(ck), framework="pt") as f:
            header = {k: v for k, v in (f.metadata() or {}).items() if k != "meta"}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        save_file(tensors, str(ck), metadata=header)
    before = snapshot(tmp_path)
    assert obscure_cli.run(_cli(tmp_path, checkpoint=str(ck))) == 2
    err = capsys.readouterr().err
    assert err.startswith("upgan obscure: error:") and "Traceback" not in err and "nothing was written" in err
    assert snapshot(tmp_path) == {**before, **{k: v for k, v in snapshot(tmp_path).items() if k.endswith("p.png")}}
    assert not (tmp_path / "o.png").exists()


def test_gallery_with_object_arrays_is_refused_without_unpickling(tmp_path, capsys):
    from upgan_lib.faceset import FaceSet, NotAPreparedSet
    from upgan_lib.synthfaces import make_synthfaces

    make_synthfaces(2, 6, seed=0).save(tmp_path / "gallery")
    np.save(tmp_path / "gallery" / "faces.npy", np.array([object()] * 12, dtype=object), allow_pickle=True)
    with pytest.raises(NotAPreparedSet, match="not a plain numeric array"):
        FaceSet.load(tmp_path / "gallery")
    assert obscure_cli.run(_cli(tmp_path, method="ksame", gallery=str(tmp_path / "gallery"))) == 2
    err = capsys.readouterr().err
    assert "--gallery" in err and "not a plain numeric array" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# prepare: archives
# ---------------------------------------------------------------------------------------------
def _tar(path: Path, members):
    with tarfile.open(path, "w:gz") as t:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))


def _jpg(seed):
    b = io.BytesIO()
    Image.fromarray(photo(seed, (64, 64))).save(b, "JPEG")
    return b.getvalue()


def test_archive_with_duplicate_and_oversized_members(tmp_path, monkeypatch):
    from upgan_lib.prepare import PrepareConfig, PrepareError, prepare

    name = "UTKFace/20_0_0_20170109150557335.jpg.chip.jpg"
    arc = tmp_path / "UTKFace.tar.gz"
    _tar(arc, [(name, _jpg(0)), (name, _jpg(1)), ("UTKFace/21_1_2_20170109150557336.jpg.chip.jpg", _jpg(2) * 50)])
    before = snapshot(tmp_path)
    monkeypatch.setattr(rawfiles, "MAX_MEMBER_BYTES", 20_000)
    with pytest.raises(PrepareError) as e:  # nothing holds a face: a clear error naming every reason
        prepare("utkface", arc, tmp_path / "out", PrepareConfig(workers=1), progress=False, verbose=False)
    assert "duplicate_name" in str(e.value) and "too_large" in str(e.value)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["skipped"]["duplicate_name"] == 1 and report["skipped"]["too_large"] == 1
    assert snapshot(tmp_path, exclude=tmp_path / "out") == before
    # the member cap is checked before a member is read
    src = rawfiles.RawSource(arc)
    got = dict(src.read_many([m.name for m in src.list()]))
    assert isinstance(got["UTKFace/21_1_2_20170109150557336.jpg.chip.jpg"], rawfiles.TooLarge)


def test_folder_source_counts_links_fifos_and_unreadable_folders(tmp_path):
    from upgan_lib.prepare import PrepareConfig, PrepareError, prepare

    src = tmp_path / "UTKFace"
    src.mkdir()
    (src / "20_0_0_20170109150557335.jpg.chip.jpg").write_bytes(_jpg(0))
    (src / "21_0_0_20170109150557336.jpg.chip.jpg").symlink_to(tmp_path / "gone.jpg")
    os.mkfifo(src / "22_0_0_20170109150557337.jpg.chip.jpg")
    before = snapshot(tmp_path)
    s = rawfiles.RawSource(src)
    assert [e.name for e in s.list()] == ["20_0_0_20170109150557335.jpg.chip.jpg"]
    assert sorted(r for _, r in s.not_listed) == ["dangling_link", "not_regular"]
    with pytest.raises(PrepareError):  # no face in the one photo: a clear error, and a report
        prepare("utkface", src, tmp_path / "out", PrepareConfig(workers=1), progress=False, verbose=False)
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["not_read_paths"]["by_reason"] == {"dangling_link": 1, "not_regular": 1}
    assert snapshot(tmp_path, exclude=tmp_path / "out") == before


def test_single_fifo_input_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "p.jpg")
    with pytest.raises(ObscureError, match="not a regular file"):
        _run(tmp_path / "p.jpg", tmp_path / "o.jpg")
    assert not (tmp_path / "o.jpg").exists()
