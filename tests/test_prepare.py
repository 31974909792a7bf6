"""`upgan prepare`: synthetic UTKFace-like and identity folders end to end, caching, bad input, CLI."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import tarfile

import numpy as np
import pytest
from conftest import real_archive
from data_helpers import (make_tar_gz, write_celeba_layout, write_fake_utkface, write_identity_folders)

from upgan_lib.align import canonical_points7
from upgan_lib.faceset import FaceSet
from upgan_lib.prepare import (PrepareConfig, PrepareError, _spread, add_arguments, default_out, format_report,
                               load_or_prepare, load_report, prepare, run)
from upgan_lib.utility import reduce_68_to_7
from upgan_lib.utkface import parse_utkface_name

CFG1 = PrepareConfig(workers=1)


def _check_report_adds_up(report):
    assert report["kept"] + sum(report["skipped"].values()) == report["inputs"]
    for reason, n in report["skipped"].items():
        assert len(report["skipped_files"][reason]) == n
        for f in report["skipped_files"][reason]:
            assert f["name"] and f["message"]


@pytest.fixture(scope="module")
def fake_utk(tmp_path_factory):
    root = tmp_path_factory.mktemp("utk")
    expect = write_fake_utkface(root / "src")
    res = prepare("utkface", root / "src", root / "out", CFG1, progress=False, verbose=False)
    return root, expect, res


def test_utkface_end_to_end(fake_utk):
    root, expect, res = fake_utk
    rep, fs = res.report, res.faceset
    assert not res.cached and res.out == root / "out"
    assert rep["inputs"] == expect["inputs"] and rep["kept"] == expect["kept"] == len(fs)
    assert rep["skipped"] == expect["skipped"]
    _check_report_adds_up(rep)
    assert sorted(r["name"].split("/")[-1] for r in rep["repaired"]) == sorted(expect["repaired"])
    assert rep["conversions"] == expect["conversions"]
    assert rep["ignored_files"]["names"] == ["UTKFace/README.txt"]
    assert sum(rep["detection_paths"].values()) == len(fs)
    msgs = {f["name"].split("/")[-1]: f["message"] for v in rep["skipped_files"].values() for f in v}
    assert "race" in msgs["39_1_20170116174525125.jpg.chip.jpg"]
    assert "truncated" in msgs["31_1_0_20170116000000002.jpg.chip.jpg"]
    assert "no face" in msgs["34_0_4_20170116000000005.jpg.chip.jpg"]
    # the set on disk
    assert fs.faces.shape == (len(fs), 128, 128, 3) and fs.masks.shape == (len(fs), 128, 128)
    assert isinstance(fs.faces, np.memmap)
    for i, name in enumerate(fs.sources):
        lab = parse_utkface_name(name)
        assert (fs.age[i], fs.gender[i], fs.race[i], fs.identity[i]) == (lab.age, lab.gender, lab.race, -1)
    assert fs.utility().shape == (len(fs), 17)
    assert fs.meta["fingerprint"] == rep["fingerprint"] and fs.meta["dataset"] == "utkface"
    # aligned: the 7 points of every kept face fall near the template
    err = np.linalg.norm(fs.points7() - canonical_points7(), axis=2)
    assert np.median(err[:, :2]) < 4 and err[:, :2].max() < 9
    # masks hold the landmarks and are a plausible fraction of the frame
    assert 0.3 < fs.masks.mean() < 0.85  # the face fills most of the tight UTKFace-like frame
    saved = json.loads((root / "out" / "report.json").read_text())
    assert saved["kept"] == rep["kept"] and load_report(root / "out")["inputs"] == rep["inputs"]
    text = format_report(rep)
    assert "race_missing" in text and "repaired name" in text and "39_1_20170116174525125" in text


def test_rerun_uses_cache_and_changes_invalidate(fake_utk, tmp_path):
    root, expect, first = fake_utk
    src = tmp_path / "src"
    shutil.copytree(root / "src", src)
    out = tmp_path / "out"
    a = prepare("utkface", src, out, CFG1, progress=False, verbose=False)
    b = prepare("utkface", src, out, PrepareConfig(workers=3), progress=False, verbose=False)  # workers don't matter
    assert b.cached and b.report["fingerprint"] == a.report["fingerprint"] and len(b.faceset) == len(a.faceset)
    assert np.array_equal(np.asarray(a.faceset.faces), np.asarray(first.faceset.faces))
    # a new file changes the source fingerprint
    shutil.copy(src / "UTKFace" / expect["good"][0], src / "UTKFace" / "70_1_1_20170116000000009.jpg.chip.jpg")
    c = prepare("utkface", src, out, CFG1, progress=False, verbose=False)
    assert not c.cached and c.report["inputs"] == expect["inputs"] + 1 and len(c.faceset) == len(a.faceset) + 1
    # an option change too
    d = prepare("utkface", src, out, PrepareConfig(workers=1, limit=3), progress=False, verbose=False)
    assert not d.cached and d.report["inputs"] == 3
    assert prepare("utkface", src, out, PrepareConfig(workers=1, limit=3), progress=False, force=True,
                   verbose=False).cached is False


def test_archive_and_read_only_source_give_the_same_set(fake_utk, tmp_path):
    root, expect, first = fake_utk
    tgz = make_tar_gz(root / "src" / "UTKFace", tmp_path / "UTKFace.tar.gz")
    ro = tmp_path / "ro"
    ro.mkdir()
    shutil.copy(tgz, ro / tgz.name)
    os.chmod(ro / tgz.name, stat.S_IREAD)
    os.chmod(ro, stat.S_IREAD | stat.S_IEXEC)
    try:
        res = prepare("utkface", ro / tgz.name, tmp_path / "out", CFG1, progress=False, verbose=False)
    finally:
        os.chmod(ro, stat.S_IRWXU)
    assert res.faceset.sources == first.faceset.sources
    assert np.array_equal(np.asarray(res.faceset.faces), np.asarray(first.faceset.faces))
    assert res.report["skipped"] == expect["skipped"]


def test_workers_really_fan_out(tmp_path):
    # enough inputs for two workers (one per 16 images): the same faces under many names
    expect = write_fake_utkface(tmp_path / "src", n_good=4, with_bad=False)
    folder = tmp_path / "src" / "UTKFace"
    for k in range(36):
        shutil.copy(folder / expect["good"][k % 4], folder / f"{40 + k}_0_0_201701160000000{k:02d}.jpg.chip.jpg")
    one = prepare("utkface", tmp_path / "src", tmp_path / "o1", CFG1, progress=False, verbose=False)
    two = prepare("utkface", tmp_path / "src", tmp_path / "o2", PrepareConfig(workers=2), progress=False, verbose=False)
    assert two.report["workers"] == 2 and len(two.faceset) == len(one.faceset) == 40
    assert np.array_equal(np.asarray(one.faceset.faces), np.asarray(two.faceset.faces))


def test_limit_spreads_over_the_set():
    assert list(_spread(10, 3)) == [0, 4, 9] and list(_spread(3, 10)) == [0, 1, 2]


def test_identity_folders_end_to_end(tmp_path):
    expect = write_identity_folders(tmp_path / "src", n_ids=3, per_id=2)
    res = prepare("identities", tmp_path / "src", tmp_path / "out", CFG1, progress=False, verbose=False)
    rep, fs = res.report, res.faceset
    _check_report_adds_up(rep)
    assert rep["layout"] == "folders" and rep["inputs"] == 7
    assert rep["skipped"] == {"not_in_identity_folder": 1} and len(fs) == 6
    assert fs.meta["identity_names"] == {"0": "person_a", "1": "person_b", "2": "person_c"}
    assert rep["identities"]["count"] == 3
    for i, name in enumerate(fs.sources):
        assert fs.identity[i] == expect["names"][name]
        assert fs.age[i] == fs.gender[i] == fs.race[i] == -1
    err = np.linalg.norm(fs.points7() - canonical_points7(), axis=2)
    assert np.median(err[:, :2]) < 4
    # the crop's landmarks are the photo's true landmarks moved by the crop's similarity: check via
    # the known placement of each synthetic face (eyes within a few pixels)
    from upgan_lib.align import alignment_matrix, apply_matrix
    for i, name in enumerate(fs.sources):
        true68 = expect["landmarks"][name]
        m = alignment_matrix(true68)
        assert np.linalg.norm(reduce_68_to_7(apply_matrix(m, true68))[:2] - fs.points7()[i][:2], axis=1).max() < 6


def test_celeba_layout_with_missing_file(tmp_path):
    expect = write_celeba_layout(tmp_path / "src", n_ids=2, per_id=2, missing=1)
    tgz = make_tar_gz(tmp_path / "src" / "celeba-identities", tmp_path / "celeba-identities.tar.gz")
    res = prepare("identities", tgz, tmp_path / "out", CFG1, progress=False, verbose=False)
    rep, fs = res.report, res.faceset
    _check_report_adds_up(rep)
    assert rep["inputs"] == 5 and rep["skipped"] == {"missing_file": 1} and len(fs) == 4
    assert rep["skipped_files"]["missing_file"][0]["name"] == expect["missing"][0]
    assert rep["unlisted_files"]["names"] == expect["unlisted"]
    assert rep["bad_identity_lines"] and "broken" in rep["bad_identity_lines"][0]
    assert {n: int(i) for n, i in zip(fs.sources, fs.identity)} == expect["labels"]


def test_identity_limit_keeps_identity_order(tmp_path):
    write_identity_folders(tmp_path / "src", n_ids=3, per_id=2)
    res = prepare("identities", tmp_path / "src", tmp_path / "out", PrepareConfig(workers=1, limit=3),
                  progress=False, verbose=False)
    assert res.report["inputs"] == 3 and list(res.faceset.identity) == [0, 0, 1]


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(PrepareError, match="no such file or folder"):
        prepare("utkface", tmp_path / "nowhere.tar.gz", tmp_path / "out", CFG1, progress=False)
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(PrepareError, match="empty.tar.gz.*no image files"):
        prepare("utkface", empty, tmp_path / "out", CFG1, progress=False)
    with pytest.raises(PrepareError, match="unknown data set"):
        prepare("celebrities", empty, tmp_path / "out")
    with pytest.raises(PrepareError, match="at least 1"):
        prepare("utkface", empty, tmp_path / "out", PrepareConfig(limit=0))


def test_nothing_usable_is_an_error_with_report(tmp_path):
    folder = tmp_path / "src" / "UTKFace"
    folder.mkdir(parents=True)
    (folder / "20_0_0_20170116000000001.jpg.chip.jpg").write_bytes(b"garbage")
    with pytest.raises(PrepareError, match="none of the 1 inputs"):
        prepare("utkface", tmp_path / "src", tmp_path / "out", CFG1, progress=False, verbose=False)
    assert load_report(tmp_path / "out")["skipped"] == {"corrupt": 1}
    assert not (tmp_path / "out" / "faceset.json").exists()


def test_default_paths_and_missing_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("UPGAN_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("UPGAN_CACHE", str(tmp_path / "cache"))
    assert default_out("utkface") == tmp_path / "cache" / "prepared" / "utkface"
    assert default_out("utkface", 200).name == "utkface-limit200"
    with pytest.raises(PrepareError, match="UTKFace.tar.gz"):
        prepare("utkface")
    write_fake_utkface(tmp_path / "data", n_good=2, with_bad=False)  # data/UTKFace/ folder
    fs = load_or_prepare("utkface", workers=1, progress=False, verbose=False)
    assert len(fs) == 2 and (tmp_path / "cache" / "prepared" / "utkface" / "faceset.json").exists()
    assert isinstance(FaceSet.load(tmp_path / "cache" / "prepared" / "utkface"), FaceSet)


def _cli(argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return run(p.parse_args(argv))


def test_cli(tmp_path, capsys):
    write_fake_utkface(tmp_path / "src", n_good=2, with_bad=False)
    out = tmp_path / "out"
    assert _cli(["utkface", "--source", str(tmp_path / "src"), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    assert "report:" in capsys.readouterr().out
    assert _cli(["utkface", "--source", str(tmp_path / "src"), "--out", str(out), "--no-progress"]) == 0
    assert "using the prepared set" in capsys.readouterr().out
    assert _cli(["utkface", "--source", str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "no such file or folder" in err


def test_for_preset():
    assert PrepareConfig.for_preset("smoke").limit == 200
    assert PrepareConfig.for_preset("full").limit is None
    with pytest.raises(ValueError):
        PrepareConfig.for_preset("huge")


# ---------------------------------------------------------------------------- real data (limit 200)
@pytest.mark.real_data
def test_real_utkface_sample(tmp_path):
    res = prepare("utkface", real_archive("UTKFace.tar.gz"), tmp_path / "out", PrepareConfig(limit=200, workers=2),
                  progress=False, verbose=False)
    rep, fs = res.report, res.faceset
    _check_report_adds_up(rep)
    assert rep["inputs"] == 200 and rep["detection_rate"] >= 0.98 and len(fs) >= 196
    # landmark quality: the aligned crops' 7 points fall near the canonical template
    err = np.linalg.norm(fs.points7() - canonical_points7(), axis=2)  # (N, 7) pixels of 128
    med = np.median(err, axis=0)
    assert med[:2].max() < 4.5 and med[2:5].max() < 6.5 and med[5:].max() < 4.5
    assert np.percentile(err[:, :2], 95) < 8
    assert 0.3 < fs.masks.mean() < 0.85
    assert fs.age.min() >= 1 and set(np.unique(fs.gender)) <= {0, 1} and set(np.unique(fs.race)) <= set(range(5))


@pytest.mark.real_data
def test_real_identities_sample(tmp_path):
    res = prepare("identities", real_archive("celeba-identities.tar.gz"), tmp_path / "out",
                  PrepareConfig(limit=200, workers=2), progress=False, verbose=False)
    rep, fs = res.report, res.faceset
    _check_report_adds_up(rep)
    assert rep["inputs"] == 200 and rep["kept"] >= 180 and rep["layout"] == "celeba"
    assert rep["identities"]["count"] >= 5 and np.all(fs.identity >= 0)
    err = np.linalg.norm(fs.points7() - canonical_points7(), axis=2)
    assert np.median(err[:, :2]) < 5


def test_processing_errors_are_reported_not_raised(monkeypatch):
    from upgan_lib import prepare_worker as P
    from upgan_lib.landmarks import DetectConfig, default_landmarker

    from data_helpers import detectable_faces, jpeg_bytes

    def broken(*a, **k):
        raise ValueError("the source points coincide; cannot fit a similarity")

    monkeypatch.setattr(P, "align_face", broken)
    img = detectable_faces()[0][0]
    r = P.process_image(default_landmarker(), jpeg_bytes(img), "x.jpg", DetectConfig.for_kind("crops"))
    assert not r["ok"] and r["reason"] == "processing_error" and "coincide" in r["message"]
    r = P.process_image(default_landmarker(), b"", "empty.jpg", DetectConfig.for_kind("crops"))
    assert r["reason"] == "empty"


def test_explicit_data_root_and_cache_override_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("UPGAN_DATA", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("UPGAN_CACHE", str(tmp_path / "elsewhere_cache"))
    write_fake_utkface(tmp_path / "data", n_good=2, with_bad=False)
    fs = load_or_prepare("utkface", workers=1, progress=False, verbose=False, data_root=tmp_path / "data",
                         cache=tmp_path / "cache")
    assert len(fs) == 2 and (tmp_path / "cache" / "prepared" / "utkface" / "report.json").exists()
    assert not (tmp_path / "elsewhere_cache" / "prepared").exists()
