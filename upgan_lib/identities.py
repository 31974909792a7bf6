"""Identity-labelled photo sets: which photo shows whom.

Two layouts are read, from a folder or directly from an archive:

* **CelebA identity file** (the shared ``celeba-identities`` set, and CelebA itself): a text file
  ``identity_CelebA.txt`` with one ``<image name> <identity number>`` per line (an optional header
  line ``image identity`` is allowed), next to a photo folder ``img_celeba/`` (in-the-wild photos;
  ``img_align_celeba/`` is used when it is the only one present). Identities keep their CelebA
  numbers. A photo named in the file but absent is counted as ``missing_file``; photos present
  but not named are ignored and counted in the report.
* **A folder per identity** (FaceScrub after download, LFW's ``lfw/<Name>/<Name>_0001.jpg``, your
  own photos): ``<root>/<identity name>/<photo>``. A single top folder wrapping everything (as in
  ``lfw.tgz``) is looked through. Identities are numbered 0, 1, ... in name order; the names are
  kept in ``IdentityListing.identity_names``. Images directly in the root belong to nobody and are
  counted as ``not_in_identity_folder``.

The photos are not aligned: ``upgan_lib.prepare`` detects, aligns and masks them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from .rawfiles import RawSource, SourceError, is_image_name

IDENTITY_FILE = "identity_CelebA.txt"
PHOTO_FOLDERS = ("img_celeba", "img_align_celeba")


@dataclass(frozen=True)
class IdentityPhoto:
    """One input: ``name`` (path inside the source), ``identity`` (-1 unknown), and ``problem`` (a skip
    reason such as ``missing_file``, with ``message``) when it cannot be used."""

    name: str
    identity: int
    problem: str | None = None
    message: str = ""

    @property
    def usable(self) -> bool:
        return self.problem is None


@dataclass
class IdentityListing:
    """Photos to prepare and the problems found while listing them.

    layout: ``"celeba"`` or ``"folders"``; photos: every input, usable or not, sorted by identity
    (unknown last) then name; identity_names: identity number -> name (folder layout) or the
    CelebA number as text; bad_lines: unparsable lines of the identity file ``(line number,
    text)``; unlisted: image files present but not named in the identity file (not inputs).
    """

    layout: str
    photos: list[IdentityPhoto]
    identity_names: dict[int, str]
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    identity_file: str | None = None

    def usable(self) -> list[IdentityPhoto]:
        return [p for p in self.photos if p.usable]

    def problems(self) -> dict[str, list[IdentityPhoto]]:
        out: dict[str, list[IdentityPhoto]] = {}
        for p in self.photos:
            if not p.usable:
                out.setdefault(p.problem, []).append(p)
        return out

    def counts_per_identity(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for p in self.usable():
            out[p.identity] = out.get(p.identity, 0) + 1
        return out


def _order(p: IdentityPhoto):
    return (p.identity < 0, p.identity, p.name)


def parse_identity_file(text: str, file_name: str = IDENTITY_FILE) -> tuple[list[tuple[str, int]], list[tuple[int, str]]]:
    """``(pairs, bad_lines)`` from the text of a CelebA identity file. A first line that does not end in
    an integer is taken as a header; other unparsable lines are returned as ``(line number, text)``."""
    pairs, bad = [], []
    for i, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            pairs.append((parts[0], int(parts[1])))
        elif i == 1 and len(parts) == 2:
            continue  # header, e.g. "image identity"
        else:
            bad.append((i, s[:200]))
    return pairs, bad


def _strip_common_top(names: list[str]) -> str:
    """The single top folder wrapping every name, repeatedly, while something lies two levels below it
    (``lfw/<Name>/<photo>`` -> ``lfw/``); '' if none."""
    prefix = ""
    rest = names
    while rest:
        firsts = {PurePosixPath(n).parts[0] for n in rest}
        if len(firsts) != 1 or not any(len(PurePosixPath(n).parts) >= 3 for n in rest):
            break
        top = firsts.pop()
        prefix += top + "/"
        rest = [n[len(top) + 1:] for n in rest]
    return prefix


def list_identity_photos(source: RawSource | str) -> IdentityListing:
    """Find the layout of ``source`` and list its photos with identity labels."""
    src = source if isinstance(source, RawSource) else RawSource(source)
    entries = src.list()
    names = [e.name for e in entries]
    id_files = sorted((n for n in names if PurePosixPath(n).name == IDENTITY_FILE), key=lambda n: (n.count("/"), n))
    if id_files:
        return _list_celeba(src, names, id_files[0])
    images = [n for n in names if is_image_name(n)]
    if not images:
        raise SourceError(f"{src.path}: no images and no {IDENTITY_FILE} found. Expected either a CelebA-style set "
                          f"({IDENTITY_FILE} + img_celeba/) or one folder per identity (<root>/<identity>/<photo>.jpg).")
    return _list_folders(images)


def _list_celeba(src: RawSource, names: list[str], id_file: str) -> IdentityListing:
    base = str(PurePosixPath(id_file).parent)
    base = "" if base == "." else base + "/"
    present = set(names)
    folder = None
    for cand in PHOTO_FOLDERS:
        if any(n.startswith(base + cand + "/") for n in names):
            folder = cand
            break
    if folder is None:
        raise SourceError(f"{src.path}: {id_file} found but no photo folder next to it (expected {base}img_celeba/ "
                          f"or {base}img_align_celeba/ holding the listed photos)")
    try:
        text = src.read(id_file).decode("utf-8", errors="replace")
    except OSError as e:
        raise SourceError(f"{src.path}: cannot read {id_file}: {e}") from e
    pairs, bad = parse_identity_file(text, id_file)
    photos, seen = [], set()
    for img, ident in pairs:
        full = f"{base}{folder}/{img}"
        if full in seen:
            bad.append((0, f"{img} listed twice; the first label is used"))
            continue
        seen.add(full)
        if full in present:
            photos.append(IdentityPhoto(full, ident))
        else:
            photos.append(IdentityPhoto(full, ident, "missing_file",
                                        f"named in {id_file} (identity {ident}) but not present in the source"))
    prefix = f"{base}{folder}/"
    unlisted = [n for n in names if n.startswith(prefix) and is_image_name(n) and n not in seen]
    photos.sort(key=_order)
    ids = sorted({p.identity for p in photos})
    return IdentityListing("celeba", photos, {i: str(i) for i in ids}, bad, unlisted, id_file)


def _list_folders(images: list[str]) -> IdentityListing:
    prefix = _strip_common_top(images)
    loose, by_name = [], {}
    for n in images:
        parts = PurePosixPath(n[len(prefix):]).parts
        if len(parts) < 2:
            loose.append(IdentityPhoto(n, -1, "not_in_identity_folder",
                                       "image in the root folder, not inside an identity folder; its identity is unknown"))
        else:
            by_name.setdefault(parts[0], []).append(n)
    if not by_name:
        raise SourceError(f"no identity folders found among {len(images)} images: expected <root>/<identity>/<photo>.jpg")
    id_names = sorted(by_name)
    photos = [IdentityPhoto(n, i) for i, nm in enumerate(id_names) for n in by_name[nm]] + loose
    photos.sort(key=_order)
    return IdentityListing("folders", photos, dict(enumerate(id_names)))


# ---------------------------------------------------------------------------- a synthetic stand-in
def write_synthetic_identities(folder, n_identities: int = 4, photos_per_identity: int = 4, seed: int = 0,
                               canvas: int = 256):
    """Write a folder-per-identity set ``folder/people/<synth_person_NN>/<k>.jpg`` from SynthFaces, for the
    smoke preset and demos: each photo places one drawing of the person, enlarged, turned and
    shifted, on a larger textured background (so it must be found and aligned like a real
    photo), plus ``people/synth_person_00/no_face.jpg`` without a face. Returns ``folder``.
    """
    import io
    from pathlib import Path

    import cv2
    import numpy as np
    from PIL import Image

    from .synthfaces import make_synthfaces

    folder = Path(folder)
    base = folder / "people"
    fs = make_synthfaces(n_identities, photos_per_identity, seed=seed)
    rng = np.random.default_rng(seed)

    def background():
        bg = rng.normal(0, 1, (canvas // 8, canvas // 8, 3)).astype(np.float32)
        bg = cv2.resize(bg, (canvas, canvas), interpolation=cv2.INTER_CUBIC)
        return np.clip(120 + 35 * bg, 0, 255).astype(np.uint8)

    def save(img, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=92)
        path.write_bytes(buf.getvalue())

    for i in range(len(fs)):
        scale = rng.uniform(1.2, 1.6)
        m = cv2.getRotationMatrix2D((64.0, 64.0), rng.uniform(-12, 12), scale)
        m[:, 2] += rng.uniform(canvas * 0.4, canvas * 0.6, 2) - 64.0
        photo = cv2.warpAffine(np.ascontiguousarray(fs.faces[i]), m, (canvas, canvas), dst=background(),
                               borderMode=cv2.BORDER_TRANSPARENT)
        save(photo, base / f"synth_person_{fs.identity[i]:02d}" / f"{i % photos_per_identity:04d}.jpg")
    save(background(), base / "synth_person_00" / "no_face.jpg")
    return folder
