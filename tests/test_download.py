"""Checksums, downloads (file:// URLs only), copying, unpacking and the manual-step messages. No network."""
from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import tarfile
import zipfile

import pytest
from conftest import real_archive

from upgan_lib import download as D
from upgan_lib.download import (ChecksumMismatch, DownloadError, ManualStepRequired, fetch, read_sha256sums,
                                sha256_file, unpack, verify_checksum, verify_folder)


def _file(path, data=b"hello upgan\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_sha256_file_and_sums_format(tmp_path):
    p, digest = _file(tmp_path / "a.tar.gz", b"x" * 3_000_000)
    assert sha256_file(p) == digest
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{digest}  shared/datasets/a.tar.gz\n# comment\n\n{'0' * 64} *b.zip\n")
    assert read_sha256sums(sums) == {"a.tar.gz": digest, "b.zip": "0" * 64}
    sums.write_text("nonsense line\n")
    with pytest.raises(DownloadError, match="line 1"):
        read_sha256sums(sums)


def test_verify_checksum(tmp_path):
    p, digest = _file(tmp_path / "data" / "x.tgz")
    assert verify_checksum(p, digest) == digest
    with pytest.raises(ChecksumMismatch) as e:
        verify_checksum(p, "f" * 64)
    assert str(p) in str(e.value) and digest in str(e.value) and "download it again" in str(e.value)
    assert verify_checksum(p) == digest  # nothing known: no judgement
    (tmp_path / "data" / "SHA256SUMS").write_text(f"{'a' * 64}  x.tgz\n")
    with pytest.raises(ChecksumMismatch):
        verify_checksum(p)  # the SHA256SUMS beside it is used
    with pytest.raises(DownloadError, match="no such file"):
        verify_checksum(tmp_path / "nothing")


def test_known_checksums_apply_by_name(tmp_path):
    p, _ = _file(tmp_path / "UTKFace.tar.gz", b"not the real archive")
    with pytest.raises(ChecksumMismatch, match="UTKFace.tar.gz"):
        verify_checksum(p)


def test_verify_folder(tmp_path):
    a, da = _file(tmp_path / "a.bin", b"a")
    _file(tmp_path / "b.bin", b"b")
    (tmp_path / "SHA256SUMS").write_text(f"{da}  a.bin\n{'0' * 64}  b.bin\n{'1' * 64}  c.bin\n")
    assert verify_folder(tmp_path) == {"a.bin": "ok", "b.bin": "mismatch", "c.bin": "missing"}
    with pytest.raises(DownloadError, match="no checksum file"):
        verify_folder(tmp_path / "sub")


def test_download_file_from_local_url(tmp_path):
    src, digest = _file(tmp_path / "remote" / "lfw.tgz", b"payload" * 1000)
    dest = D.download_file(src.as_uri(), tmp_path / "data" / "lfw.tgz", sha256=digest, progress=False)
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(ChecksumMismatch):
        D.download_file(src.as_uri(), tmp_path / "data" / "bad.tgz", sha256="0" * 64, progress=False)
    assert not (tmp_path / "data" / "bad.tgz").exists() and not (tmp_path / "data" / "bad.tgz.part").exists()
    with pytest.raises(DownloadError, match="failed"):
        D.download_file((tmp_path / "absent").as_uri(), tmp_path / "data" / "c.tgz", progress=False)


def _tgz(path, members: dict[str, bytes]):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def test_unpack_tar_and_zip(tmp_path):
    tgz = _tgz(tmp_path / "a.tar.gz", {"UTKFace/1.jpg": b"1", "UTKFace/2.jpg": b"22"})
    out = unpack(tgz, tmp_path / "x")
    assert (out / "UTKFace" / "2.jpg").read_bytes() == b"22"
    z = tmp_path / "b.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("lfw/A/1.jpg", b"a")
        f.writestr("lfw/B/", b"")
    unpack(z, tmp_path / "y")
    assert (tmp_path / "y" / "lfw" / "A" / "1.jpg").read_bytes() == b"a" and (tmp_path / "y" / "lfw" / "B").is_dir()


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil.txt", "a/../../evil.txt"])
def test_unpack_refuses_paths_outside(tmp_path, name):
    tgz = _tgz(tmp_path / "evil.tar.gz", {name: b"x"})
    with pytest.raises(DownloadError, match="outside"):
        unpack(tgz, tmp_path / "x")
    assert not (tmp_path / "evil.txt").exists()


def test_unpack_refuses_links_empty_and_broken(tmp_path):
    tgz = tmp_path / "link.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        t.addfile(info)
    with pytest.raises(DownloadError, match="links"):
        unpack(tgz, tmp_path / "x")
    empty = _tgz(tmp_path / "empty.tar.gz", {})
    with pytest.raises(DownloadError, match="no files"):
        unpack(empty, tmp_path / "y")
    data = _tgz(tmp_path / "ok.tar.gz", {f"f{i}": bytes(range(256)) * 400 for i in range(5)}).read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 3])
    with pytest.raises(DownloadError, match="cut.tar.gz"):
        unpack(tmp_path / "cut.tar.gz", tmp_path / "z")


def test_fetch_copies_from_a_local_path_and_verifies(tmp_path, monkeypatch):
    src, digest = _file(tmp_path / "drive" / "UTKFace (1).tar.gz", b"archive bytes")
    monkeypatch.setitem(D.KNOWN_SHA256, "UTKFace.tar.gz", digest)
    dest = fetch("utkface", tmp_path / "data", from_path=src, verbose=False)
    assert dest == tmp_path / "data" / "UTKFace.tar.gz" and dest.read_bytes() == b"archive bytes"
    assert fetch("utkface", tmp_path / "data", verbose=False) == dest  # present: verified, not fetched again
    monkeypatch.setitem(D.KNOWN_SHA256, "UTKFace.tar.gz", "0" * 64)
    with pytest.raises(ChecksumMismatch):
        fetch("utkface", tmp_path / "data", verbose=False)
    with pytest.raises(DownloadError, match="is a folder"):
        fetch("utkface", tmp_path / "data", from_path=tmp_path / "drive", verbose=False)


def test_fetch_downloads_when_there_is_a_url(tmp_path, monkeypatch):
    src, digest = _file(tmp_path / "mirror" / "lfw.tgz", b"lfw bytes")
    monkeypatch.setitem(D.DATASETS, "lfw", D.DatasetInfo("lfw", "lfw.tgz", "LFW", url=src.as_uri()))
    monkeypatch.setitem(D.KNOWN_SHA256, "lfw.tgz", digest)
    assert fetch("lfw", tmp_path / "data", progress=False, verbose=False).read_bytes() == b"lfw bytes"


def test_manual_steps_are_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    with pytest.raises(ManualStepRequired) as e:
        fetch("utkface", tmp_path / "data", verbose=False)
    msg = str(e.value)
    assert "kaggle.json" in msg and "susanqq.github.io/UTKFace" in msg and "--from" in msg
    with pytest.raises(ManualStepRequired, match="URL lists"):
        fetch("facescrub", tmp_path / "data", verbose=False)
    with pytest.raises(ManualStepRequired, match="identity_CelebA.txt"):
        fetch("celeba", tmp_path / "data", verbose=False)
    with pytest.raises(DownloadError, match="unknown data set"):
        fetch("imagenet", tmp_path / "data")


def _cli(argv):
    p = argparse.ArgumentParser()
    D.add_arguments(p)
    return D.run(p.parse_args(argv))


def test_cli_exit_codes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _cli(["facescrub", "--data-root", str(tmp_path)]) == 3
    assert "manual step needed" in capsys.readouterr().err
    a, da = _file(tmp_path / "a.bin", b"a")
    (tmp_path / "SHA256SUMS").write_text(f"{da}  a.bin\n")
    assert _cli(["verify", "--data-root", str(tmp_path)]) == 0
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  a.bin\n")
    assert _cli(["verify", "--data-root", str(tmp_path)]) == 1
    tgz = _tgz(tmp_path / "drive" / "lfw.tgz", {"lfw/A/1.jpg": b"a"})
    monkeypatch.setitem(D.KNOWN_SHA256, "lfw.tgz", sha256_file(tgz))
    assert _cli(["lfw", "--data-root", str(tmp_path / "d"), "--from", str(tgz), "--unpack"]) == 0
    assert (tmp_path / "d" / "lfw" / "A" / "1.jpg").exists()


@pytest.mark.real_data
def test_shared_archives_match_their_checksums():
    root = real_archive("SHA256SUMS").parent
    assert verify_folder(root) == {"UTKFace.tar.gz": "ok", "celeba-identities.tar.gz": "ok"}
    for name in ("UTKFace.tar.gz", "celeba-identities.tar.gz"):
        assert read_sha256sums(root / "SHA256SUMS")[name] == D.KNOWN_SHA256[name]


def test_obtain_finds_sets_on_a_mounted_drive_or_says_what_to_do(tmp_path, monkeypatch):
    from upgan_lib import download

    monkeypatch.setenv("UPGAN_COLAB_CONTENT", str(tmp_path / "content"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for k in ("KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(k, raising=False)
    root = tmp_path / "data"
    # nothing anywhere: one instruction, no download attempted
    with pytest.raises(download.ManualStepRequired, match="UTKFace is missing. Put UTKFace.tar.gz"):
        download.obtain("utkface", root, verbose=False)
    # a folder-per-person set on Drive is linked into the data root, where every chapter finds it
    person = tmp_path / "content" / "drive" / "MyDrive" / "upgan" / "lfw" / "Ada_Lovelace"
    person.mkdir(parents=True)
    (person / "Ada_Lovelace_0001.jpg").write_bytes(b"jpeg")
    got = download.obtain("identities", root, verbose=False, allow_download=False)
    assert got == root / "lfw" and (got / "Ada_Lovelace" / "Ada_Lovelace_0001.jpg").exists()
    from upgan_lib.prepare import default_source

    assert default_source("identities", root) == root / "lfw"
    # a CelebA-layout folder called "celeba" on Drive is taken as the course's layout
    (root / "lfw").unlink()
    shutil.rmtree(person.parent)
    celeba = tmp_path / "content" / "drive" / "MyDrive" / "celeba"
    (celeba / "img_celeba").mkdir(parents=True)
    (celeba / "identity_CelebA.txt").write_text("000001.jpg 7\n")
    assert download.obtain("identities", root, verbose=False, allow_download=False) == root / "celeba-identities"
