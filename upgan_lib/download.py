"""Getting the real data into the data root (on Colab or anywhere): download, copy, verify, unpack.

``upgan_lib.prepare`` reads the archives directly, so usually the only step is to put the archive
into the data root (``$UPGAN_DATA``, default ``<repo>/data``, on Colab ``/content/upgan/data``):

================  ===============================  ==============================================
data set          file in the data root            how to get it
================  ===============================  ==============================================
UTKFace           ``UTKFace.tar.gz``               official page (Google Drive, no login) or the
                  (or ``utkface-new.zip``)         Kaggle mirror (needs a Kaggle API token)
identity photos   ``celeba-identities.tar.gz``     the course's 160-identity CelebA subset, if your
                                                   teacher shares it; else CelebA itself, LFW or
                                                   FaceScrub (below)
LFW               ``lfw.tgz``                      direct download (scikit-learn's figshare mirror)
CelebA            ``identity_CelebA.txt`` +        official page (Google Drive), manual
                  ``img_celeba/``
FaceScrub         ``facescrub/<name>/<photo>``     manual: request the URL lists, run a downloader
================  ===============================  ==============================================

Checksums: a file is checked against the SHA-256 named for it in a ``SHA256SUMS`` file in the
data root (``sha256sum`` format), else against the one this module knows (:data:`KNOWN_SHA256`);
a mismatch raises :class:`ChecksumMismatch`. The official UTKFace release (23,708 images) is not
the course's 22,000-image copy, so its checksum is unknown here: it is printed, not rejected.

Nothing here runs at import time, and nothing in the tests touches the network.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .atomic import atomic_path
from .colab import drive_folder
from .config import data_root as _data_root

SUMS_FILE = "SHA256SUMS"

#: SHA-256 of archives whose content the course knows (by file name).
KNOWN_SHA256 = {
    # the course's shared copies (22,000-image UTKFace subset; 160-identity CelebA subset)
    "UTKFace.tar.gz": "98a31b810d0878d376b9098199970a21fd72dd32c8b4b24a24850faf06c61255",
    "celeba-identities.tar.gz": "d5808c23eb910708b6b64a22f1ab7baa43cd565e800d0c71e250ed9fd7f641e9",
    # LFW as served by scikit-learn's mirror (sklearn/datasets/_lfw.py)
    "lfw.tgz": "055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0",
}


class DownloadError(RuntimeError):
    """A download, copy or unpack failed; the message says what to do."""


class ChecksumMismatch(DownloadError):
    """A file's SHA-256 differs from the expected one."""


class ManualStepRequired(DownloadError):
    """The data set cannot be fetched automatically (login or manual step); the message says how."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    filename: str  # what goes into the data root
    what: str
    url: str | None = None  # direct download, if there is one
    kaggle: str | None = None  # Kaggle dataset slug, if mirrored there
    howto: str = ""


DATASETS: dict[str, DatasetInfo] = {
    "utkface": DatasetInfo(
        "utkface", "UTKFace.tar.gz", "UTKFace aligned & cropped faces (200x200, labels in file names)",
        kaggle="jangedoo/utkface-new",
        howto=(
            "UTKFace has no direct download link. Either\n"
            "  (a) open https://susanqq.github.io/UTKFace/ , follow 'Aligned&Cropped Faces' to Google Drive and\n"
            "      download UTKFace.tar.gz (no login); on Colab put it in your Drive and run\n"
            "      `python -m upgan_lib.download utkface --from /content/drive/MyDrive/UTKFace.tar.gz`; or\n"
            "  (b) Kaggle mirror (needs a free Kaggle account): Kaggle > Settings > API > 'Create New Token'\n"
            "      saves kaggle.json; copy it to ~/.kaggle/kaggle.json (chmod 600) or set KAGGLE_USERNAME and\n"
            "      KAGGLE_KEY, `pip install kaggle`, then run `python -m upgan_lib.download utkface` again."
        ),
    ),
    "celeba-identities": DatasetInfo(
        "celeba-identities", "celeba-identities.tar.gz",
        "the course's identity set: 160 CelebA identities, 3,789 photos (a FaceScrub stand-in)",
        howto=(
            "celeba-identities.tar.gz is the course's own subset of CelebA: get it from whoever runs your course\n"
            "and run `python -m upgan_lib.download celeba-identities --from PATH`. Without it, use any identity set:\n"
            "`python -m upgan_lib.download lfw` (direct download), CelebA (see `... download celeba`) or FaceScrub."
        ),
    ),
    "lfw": DatasetInfo(
        "lfw", "lfw.tgz", "Labeled Faces in the Wild: 13,233 photos of 5,749 people, a folder per person",
        url="https://ndownloader.figshare.com/files/5976018",
    ),
    "celeba": DatasetInfo(
        "celeba", "celeba", "CelebA in-the-wild photos with identity labels",
        howto=(
            "CelebA needs a manual download: from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html open the\n"
            "Google Drive folder and get Anno/identity_CelebA.txt and In-The-Wild Images/img_celeba.7z (split\n"
            "archive; unpack with 7z). Put both in <data root>/celeba/ as celeba/identity_CelebA.txt and\n"
            "celeba/img_celeba/*.jpg, then `upgan prepare identities --source <data root>/celeba`.\n"
            "(torchvision.datasets.CelebA(root, target_type='identity', download=True) fetches the aligned\n"
            "img_align_celeba variant from the same Drive, often stopped by its download quota.)"
        ),
    ),
    "facescrub": DatasetInfo(
        "facescrub", "facescrub", "FaceScrub (the paper's identity set): 530 people, distributed as URL lists",
        howto=(
            "FaceScrub is distributed as lists of photo URLs, not images: request the lists on\n"
            "http://vintage.winklerbros.net/facescrub.html , download the photos with the script offered there\n"
            "(many URLs are dead by now), and arrange them as <data root>/facescrub/<person name>/<photo>.jpg.\n"
            "Then `upgan prepare identities --source <data root>/facescrub` (one folder per identity)."
        ),
    ),
}


# ---------------------------------------------------------------------------- checksums
def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_sha256sums(path: str | os.PathLike) -> dict[str, str]:
    """``{file base name: hex digest}`` from a ``sha256sum``-format file (``<hex>  [*]<path>`` lines)."""
    out = {}
    for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64 or any(c not in "0123456789abcdefABCDEF" for c in parts[0]):
            raise DownloadError(f"{path}, line {i}: not '<64 hex digits>  <file>': {s[:80]!r}")
        out[PurePosixPath(parts[1].lstrip("*").strip()).name] = parts[0].lower()
    return out


def expected_sha256(path: str | os.PathLike, sums_file: str | os.PathLike | None = None) -> str | None:
    """The SHA-256 a file should have: from ``sums_file`` (default: ``SHA256SUMS`` beside it), else
    :data:`KNOWN_SHA256`, else None (unknown)."""
    p = Path(path)
    sums = Path(sums_file) if sums_file else p.parent / SUMS_FILE
    if sums.exists():
        listed = read_sha256sums(sums)
        if p.name in listed:
            return listed[p.name]
    return KNOWN_SHA256.get(p.name)


def verify_checksum(path: str | os.PathLike, expected: str | None = None,
                    sums_file: str | os.PathLike | None = None) -> str:
    """Check ``path`` against ``expected`` (or :func:`expected_sha256`); returns the actual digest.

    Raises :class:`ChecksumMismatch` on a difference, :class:`DownloadError` if the file is missing.
    With no expected digest at all, returns the digest without judging it.
    """
    p = Path(path)
    if not p.is_file():
        raise DownloadError(f"{p}: no such file to verify")
    expected = (expected or expected_sha256(p, sums_file) or "").lower() or None
    actual = sha256_file(p)
    if expected and actual != expected:
        raise ChecksumMismatch(
            f"{p}: SHA-256 is {actual}, expected {expected}. The file is incomplete, damaged or a different "
            "version: delete it and download it again (compare its size with the source's)."
        )
    return actual


def verify_folder(root: str | os.PathLike, sums_file: str | os.PathLike | None = None) -> dict[str, str]:
    """Check every file listed in ``SHA256SUMS`` (default ``<root>/SHA256SUMS``):
    ``{name: "ok" | "missing" | "mismatch"}``."""
    root = Path(root)
    sums = Path(sums_file) if sums_file else root / SUMS_FILE
    if not sums.exists():
        raise DownloadError(f"{sums}: no checksum file to verify against")
    out = {}
    for name, digest in read_sha256sums(sums).items():
        p = root / name
        if not p.exists():
            out[name] = "missing"
        else:
            out[name] = "ok" if sha256_file(p) == digest else "mismatch"
    return out


# ---------------------------------------------------------------------------- download, copy, unpack
def download_file(url: str, dest: str | os.PathLike, sha256: str | None = None, progress: bool = True,
                  timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (streamed into a ``.part`` file beside it, renamed over ``dest``
    once complete and, if ``sha256`` is given, verified; removed when anything fails)."""
    dest = Path(dest)
    with atomic_path(dest, suffix=".part") as part:
        try:
            _stream(url, part, timeout, progress, dest.name)
        except OSError as e:  # URLError and HTTPError are OSErrors
            raise DownloadError(f"downloading {url} failed ({e}); check the connection and try again, or download the "
                                f"file by hand and put it at {dest}") from e
        if sha256:
            try:
                verify_checksum(part, sha256)
            except ChecksumMismatch as e:
                raise ChecksumMismatch(f"{url}: {e}") from e
    return dest


def _stream(url: str, path: Path, timeout: float, progress: bool, label: str) -> None:
    """The body of ``url`` into ``path``, with a progress bar named ``label``."""
    from tqdm.auto import tqdm  # a notebook-aware bar: slow to import, needed only here

    with urllib.request.urlopen(url, timeout=timeout) as r, open(path, "wb") as f:
        total = int(r.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress) as bar:
            for block in iter(lambda: r.read(1 << 20), b""):
                f.write(block)
                bar.update(len(block))


def copy_into(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy a local file (e.g. from a mounted Google Drive) to ``dest`` atomically."""
    src, dest = Path(src).expanduser(), Path(dest)
    if not src.is_file():
        raise DownloadError(f"{src}: no such file to copy")
    with atomic_path(dest, suffix=".part") as part:
        shutil.copyfile(src, part)
    return dest


def _safe_target(root: Path, name: str) -> Path:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise DownloadError(f"refusing to unpack {name!r}: it would be written outside {root}")
    return root / Path(*p.parts) if p.parts else root


def unpack(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Unpack a ``.tar.gz``/``.tgz``/``.tar``/``.zip`` into ``dest``; members that would land outside
    ``dest`` (absolute paths, ``..``, links) are refused. Returns ``dest``."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    target = _safe_target(dest, info.filename)
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(info) as fi, open(target, "wb") as fo:
                        shutil.copyfileobj(fi, fo)
                    n += 1
        else:
            with tarfile.open(archive, "r:*") as t:
                for m in t:
                    target = _safe_target(dest, m.name)
                    if m.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                    elif m.isfile():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with t.extractfile(m) as fi, open(target, "wb") as fo:
                            shutil.copyfileobj(fi, fo)
                        n += 1
                    else:
                        raise DownloadError(f"refusing to unpack {m.name!r} from {archive}: links and devices are "
                                            "not expected in a data archive")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise DownloadError(f"{archive}: cannot unpack ({type(e).__name__}: {e}); it is probably truncated or not an "
                            "archive: download it again and verify its SHA-256") from e
    if n == 0:
        raise DownloadError(f"{archive}: the archive holds no files")
    return dest


def _kaggle_ready() -> bool:
    has_token = (Path.home() / ".kaggle" / "kaggle.json").exists() or (
        os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"))
    return bool(has_token) and shutil.which("kaggle") is not None


def fetch(name: str, root: str | os.PathLike | None = None, from_path: str | os.PathLike | None = None,
          progress: bool = True, verbose: bool = True) -> Path:
    """Put data set ``name`` (a key of :data:`DATASETS`) into the data root and verify it; returns its path.

    ``from_path``: copy this local archive (e.g. on a mounted Drive) instead of downloading. A file
    already in the data root is verified, not downloaded again. Raises :class:`ManualStepRequired`
    with instructions when a login or a manual step is needed.
    """
    if name not in DATASETS:
        raise DownloadError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}")
    info = DATASETS[name]
    base = _data_root(root)
    dest = base / info.filename
    say = print if verbose else (lambda *a, **k: None)
    if from_path:
        src = Path(from_path).expanduser()
        if src.is_dir():
            raise DownloadError(f"{src} is a folder: nothing to copy, prepare it where it is with "
                                f"`upgan prepare ... --source {src}` (or set UPGAN_DATA to its parent)")
        same_kind = src.name.lower().endswith((".tar.gz", ".tgz")) == info.filename.lower().endswith((".tar.gz", ".tgz"))
        dest = base / (info.filename if same_kind and "." in info.filename else src.name)
        say(f"copying {src} -> {dest}")
        copy_into(src, dest)
    elif dest.exists():
        say(f"{dest} already present")
    elif info.url:
        say(f"downloading {info.url} -> {dest}")
        download_file(info.url, dest, KNOWN_SHA256.get(info.filename), progress=progress)
    elif info.kaggle and _kaggle_ready():
        with tempfile.TemporaryDirectory(dir=base if base.exists() else None) as tmp:
            say(f"kaggle datasets download -d {info.kaggle}")
            r = subprocess.run(["kaggle", "datasets", "download", "-d", info.kaggle, "-p", tmp])
            zips = list(Path(tmp).glob("*.zip"))
            if r.returncode != 0 or not zips:
                raise DownloadError(f"the Kaggle download of {info.kaggle} failed (exit {r.returncode}); check your "
                                    "token and that you accepted the data set's terms on kaggle.com")
            dest = base / zips[0].name
            copy_into(zips[0], dest)
    else:
        raise ManualStepRequired(f"{info.what}: not in {base} ({info.filename}).\n{info.howto}")
    if dest.is_file():
        digest = verify_checksum(dest)
        known = expected_sha256(dest)
        say(f"{dest.name}: SHA-256 {digest} " + ("verified" if known else
            "(no reference checksum known for this file: not the course's copy, e.g. the official release; fine)"))
    return dest


# ---------------------------------------------------------------------------- the course's data, with no manual step
#: Archive names :func:`obtain` looks for on Google Drive (and accepts in the data root), per data set.
SOURCE_NAMES = {
    "utkface": ("UTKFace.tar.gz", "utkface-new.zip"),
    "identities": ("celeba-identities.tar.gz", "lfw.tgz", "celeba-identities", "facescrub", "lfw", "celeba"),
}


def drive_folders() -> list[Path]:
    """Folders of a mounted Google Drive that :func:`obtain` searches: ``MyDrive/upgan/data``,
    ``MyDrive/upgan``, ``MyDrive`` (empty when Drive is not mounted)."""
    base = drive_folder()
    return [base / "data", base, base.parent] if base is not None else []


def _kaggle_token_from_drive() -> bool:
    """Copy ``kaggle.json`` from Drive (``MyDrive/upgan`` or ``MyDrive``) to ``~/.kaggle``; or take
    ``KAGGLE_USERNAME``/``KAGGLE_KEY`` from Colab's secrets (the key icon on the left). True if a token is set."""
    target = Path.home() / ".kaggle" / "kaggle.json"
    if target.exists() or (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")):
        return True
    for folder in drive_folders():
        if (folder / "kaggle.json").is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / "kaggle.json", target)
            target.chmod(0o600)
            return True
    try:
        from google.colab import userdata  # Colab secrets

        os.environ["KAGGLE_USERNAME"], os.environ["KAGGLE_KEY"] = userdata.get("KAGGLE_USERNAME"), userdata.get("KAGGLE_KEY")
        return True
    except Exception:
        return False


def obtain(dataset: str, root: str | os.PathLike | None = None, verbose: bool = True, allow_download: bool = True) -> Path:
    """The raw source of ``dataset`` (``"utkface"`` or ``"identities"``), with nothing done by hand
    where that is possible; returns what ``upgan prepare`` reads.

    In order: a source already in the data root; an archive on the mounted Google Drive (copied into
    the data root and checked against its SHA-256); for UTKFace, the Kaggle mirror when a Kaggle token
    is available (``~/.kaggle/kaggle.json``, ``kaggle.json`` on Drive, or Colab secrets); for the
    identity set, LFW from its direct link (checked). Otherwise raises :class:`ManualStepRequired`
    with the one thing to do. Any identity set works: CelebA's file layout or a folder per person.
    """
    if dataset not in SOURCE_NAMES:
        raise DownloadError(f"unknown data set {dataset!r}: use 'utkface' or 'identities'")
    say = print if verbose else (lambda *a, **k: None)
    base = _data_root(root)
    for name in SOURCE_NAMES[dataset]:
        if (base / name).exists():
            path = base / name
            if path.is_file() and expected_sha256(path):
                verify_checksum(path)
                say(f"{dataset}: {path} (SHA-256 verified)")
            else:
                say(f"{dataset}: {path}")
            return path
    for folder in drive_folders():
        for name in SOURCE_NAMES[dataset]:
            if (folder / name).is_file():
                say(f"{dataset}: found {folder / name} on Google Drive")
                return fetch("utkface" if dataset == "utkface" else _info_for(name), base, from_path=folder / name,
                             verbose=verbose)
            if (folder / name).is_dir():
                # linked into the data root under a name `upgan prepare` looks for, so that every
                # chapter finds it (CelebA's layout is the course's celeba-identities layout)
                link = base / ("celeba-identities" if name == "celeba" else name)
                if not link.exists():
                    base.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(folder / name, target_is_directory=True)
                say(f"{dataset}: using the folder {folder / name} on Google Drive (as {link})")
                return link
    if dataset == "utkface" and allow_download and _kaggle_token_from_drive() and _kaggle_ready():
        return fetch("utkface", base, verbose=verbose)
    if dataset == "identities" and allow_download:
        try:
            return fetch("lfw", base, verbose=verbose)
        except DownloadError as e:
            say(f"LFW download failed: {e}")
    where = f"{drive_folders()[1]} on your Google Drive or " if drive_folders() else ""
    if dataset == "utkface":
        raise ManualStepRequired(
            f"UTKFace is missing. Put UTKFace.tar.gz (https://susanqq.github.io/UTKFace/ > Aligned&Cropped Faces) into "
            f"{where}{base}, or your Kaggle API token (kaggle.json) into "
            f"{drive_folders()[1] if drive_folders() else Path.home() / '.kaggle'} (the `kaggle` command must be "
            f"installed), then run this again. "
            f"(`python -m upgan_lib.download utkface` prints every option.)")
    raise ManualStepRequired(
        f"No identity photos. Put celeba-identities.tar.gz, lfw.tgz (http://vis-www.cs.umass.edu/lfw/) or a folder with "
        f"one sub-folder per person into {where}{base}, then run this again.")


def _info_for(name: str) -> str:
    return {"celeba-identities.tar.gz": "celeba-identities", "lfw.tgz": "lfw"}.get(name, "celeba-identities")


# ---------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=[*DATASETS, "verify"], help="data set to get, or 'verify' to check "
                        "every file listed in <data root>/SHA256SUMS")
    parser.add_argument("--data-root", help="where to put it (default: $UPGAN_DATA or <repo>/data)")
    parser.add_argument("--from", dest="from_path",
                        help="copy this local archive (e.g. on Google Drive) instead of downloading")
    parser.add_argument("--unpack", action="store_true",
                        help="also unpack the archive beside it (not needed by `upgan prepare`)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.dataset == "verify":
            res = verify_folder(_data_root(args.data_root))
            for k, v in res.items():
                print(f"{v:8s} {k}")
            return 0 if all(v == "ok" for v in res.values()) else 1
        path = fetch(args.dataset, args.data_root, args.from_path)
        if args.unpack and path.is_file():
            print(f"unpacked into {unpack(path, path.parent)}")
    except ManualStepRequired as e:
        print(f"manual step needed: {e}", file=sys.stderr)
        return 3
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m upgan_lib.download", description=__doc__.strip().splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(f"{k}: {v.what}\n{v.howto}".rstrip() for k, v in DATASETS.items()))
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
