"""FaceSet: aligned 128x128 faces with everything the course knows about each one.

A prepared set on disk is a folder of ``.npy`` arrays (memory-mapped on load, so even all of
UTKFace opens in milliseconds) plus ``faceset.json`` describing it:

================  ===========================  ==========================================
file              dtype, shape                 meaning
================  ===========================  ==========================================
faces.npy         uint8  (N, S, S, 3)          aligned RGB face crops
masks.npy         uint8  (N, S, S)             1 inside the face region (forehead included)
landmarks68.npy   float32 (N, 68, 2)           dlib-ordered landmarks, x/y pixels in the crop
labels.npy        int32  (N, 4)                age, gender, race, identity (-1 = unknown)
faceset.json      -                            format, size, sources (file names), meta
================  ===========================  ==========================================

**Packed sets** (:func:`pack`, ``upgan pack DIR OUT.npz``): the same set as one ``.npz`` file
small enough to travel (to a GPU machine, a Colab session): faces as WebP images (lossy, quality
80 by default: all of UTKFace in about 30 MiB instead of 1 GiB; the PSNR is reported), masks
bit-packed and deflated, landmarks, labels and sources exact. :meth:`FaceSet.load` opens a
packed file like a folder (decoding takes a few seconds for 22,000 faces).
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_path, atomic_write
from .utility import encode_utility, reduce_68_to_7

FORMAT = "upgan-faceset"
FORMAT_VERSION = 1
PACKED_FORMAT = "upgan-faceset-packed"
PACKED_VERSION = 1
_ARRAYS = ("faces", "masks", "landmarks68", "labels")


class NotAPreparedSet(ValueError):
    """Raised when a folder is not a prepared FaceSet."""


@dataclass
class FaceSet:
    faces: np.ndarray  # uint8 (N, S, S, 3) RGB
    masks: np.ndarray  # uint8 (N, S, S) in {0, 1}
    landmarks68: np.ndarray  # float32 (N, 68, 2)
    age: np.ndarray  # int (N,), -1 unknown
    gender: np.ndarray  # int (N,), 0 male 1 female, -1 unknown
    race: np.ndarray  # int (N,), 0..4, -1 unknown
    identity: np.ndarray  # int (N,), -1 unknown
    sources: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.faces)
        if self.faces.ndim != 4 or self.faces.shape[-1] != 3 or self.faces.shape[1] != self.faces.shape[2]:
            raise ValueError(f"faces must be (N, S, S, 3), got {self.faces.shape}")
        for name in ("masks", "landmarks68", "age", "gender", "race", "identity"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries, faces has {n}")
        if self.masks.shape[1:] != self.faces.shape[1:3]:
            raise ValueError(f"masks must be (N, S, S) like the faces, got {self.masks.shape}")
        if self.landmarks68.shape[1:] != (68, 2):
            raise ValueError(f"landmarks68 must be (N, 68, 2), got {self.landmarks68.shape}")
        if not self.sources:
            self.sources = [f"#{i}" for i in range(n)]
        if len(self.sources) != n:
            raise ValueError(f"sources has {len(self.sources)} entries, faces has {n}")

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.faces)

    @property
    def size(self) -> int:
        return int(self.faces.shape[1])

    def points7(self) -> np.ndarray:
        """The paper's 7 landmarks, (N, 7, 2) pixels."""
        return reduce_68_to_7(self.landmarks68)

    def utility(self) -> np.ndarray:
        """(N, 17) float32 utility vectors; unknown attributes must have been filled first."""
        for name in ("age", "gender", "race"):
            if np.any(getattr(self, name) < 0):
                raise ValueError(
                    f"{np.sum(getattr(self, name) < 0)} faces have no {name} label: fill them "
                    "(fixed values or the attribute estimator) before building utility vectors"
                )
        return encode_utility(self.age, self.gender, self.race, self.points7(), size=self.size)

    def mask2(self) -> np.ndarray:
        """Two-channel mask target (N, 2, S, S) float32: channel 0 face, channel 1 background."""
        m = self.masks.astype(np.float32)
        return np.stack([m, 1.0 - m], axis=1)

    def labels_array(self) -> np.ndarray:
        """(N, 4) int32: age, gender, race, identity - the on-disk ``labels`` layout."""
        return np.stack([self.age, self.gender, self.race, self.identity], axis=1).astype(np.int32)

    def subset(self, index) -> "FaceSet":
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return FaceSet(
            faces=np.asarray(self.faces[idx]),
            masks=np.asarray(self.masks[idx]),
            landmarks68=np.asarray(self.landmarks68[idx]),
            age=np.asarray(self.age[idx]),
            gender=np.asarray(self.gender[idx]),
            race=np.asarray(self.race[idx]),
            identity=np.asarray(self.identity[idx]),
            sources=[self.sources[i] for i in idx],
            meta=dict(self.meta),
        )

    def holdout_split(self, n_heldout: int, seed: int = 0) -> tuple["FaceSet", "FaceSet"]:
        """(training part, held-out part): ``n_heldout`` faces drawn by a seeded permutation, both
        parts in their original order. The same arguments always hold out the same faces, so a
        model trained with ``TrainConfig.holdout`` is scored on faces it never saw."""
        n = len(self)
        if not 0 < n_heldout < n:
            raise ValueError(f"holdout_split: cannot hold out {n_heldout} of {n} faces (need 0 < n_heldout < {n})")
        held = np.zeros(n, bool)
        held[np.random.default_rng(seed).permutation(n)[:n_heldout]] = True
        return self.subset(~held), self.subset(held)

    def resized(self, size: int) -> "FaceSet":
        """The same faces at ``size`` x ``size`` (area averaging when shrinking, bilinear when growing);
        masks resized alike and thresholded at one half, landmarks moved with the pixel grid."""
        import cv2

        if size < 8:
            raise ValueError(f"FaceSet.resized: size must be at least 8 px, got {size}")
        if size == self.size:
            return self
        interp = cv2.INTER_AREA if size < self.size else cv2.INTER_LINEAR
        faces = np.stack([cv2.resize(np.ascontiguousarray(f), (size, size), interpolation=interp) for f in self.faces])
        masks = np.stack([cv2.resize(np.ascontiguousarray(m, np.float32), (size, size), interpolation=interp) >= 0.5
                          for m in self.masks]).astype(np.uint8)
        f = size / self.size  # pixel centres: x' + 0.5 = (x + 0.5) * f
        lm = ((np.asarray(self.landmarks68, np.float32) + 0.5) * f - 0.5).astype(np.float32)
        return FaceSet(faces=faces.reshape(len(self), size, size, 3), masks=masks.reshape(len(self), size, size),
                       landmarks68=lm, age=np.asarray(self.age), gender=np.asarray(self.gender),
                       race=np.asarray(self.race), identity=np.asarray(self.identity), sources=list(self.sources),
                       meta={**self.meta, "size": size, "resized_from": self.size})

    # ------------------------------------------------------------------ disk
    def save(self, folder: str | os.PathLike) -> Path:
        """Write the set atomically (arrays first, ``faceset.json`` last)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        labels = self.labels_array()
        arrays = {
            "faces": np.ascontiguousarray(self.faces, dtype=np.uint8),
            "masks": np.ascontiguousarray(self.masks, dtype=np.uint8),
            "landmarks68": np.ascontiguousarray(self.landmarks68, dtype=np.float32),
            "labels": labels,
        }
        for name, arr in arrays.items():
            with atomic_path(folder / f"{name}.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, arr)
        info = {"format": FORMAT, "version": FORMAT_VERSION, "count": len(self), "size": self.size,
                "sources": list(self.sources), "meta": self.meta}
        atomic_write(folder / "faceset.json", json.dumps(info))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, mmap: bool = True) -> "FaceSet":
        """Open a prepared set (a folder; arrays memory-mapped unless ``mmap=False``) or a packed
        ``.npz`` file from :func:`pack`."""
        folder = Path(folder)
        if folder.is_file():
            return load_packed(folder)
        if not folder.is_dir():
            raise NotAPreparedSet(f"{folder}: no such folder. Make one with `upgan prepare utkface|identities --out {folder}`.")
        info_path = folder / "faceset.json"
        if not info_path.exists():
            raise NotAPreparedSet(
                f"{folder} is not a prepared face set (no faceset.json). Prepare raw data first with "
                f"`upgan prepare utkface --source <UTKFace.tar.gz or folder> --out {folder}`."
            )
        try:
            info = json.loads(info_path.read_text())
        except json.JSONDecodeError as e:
            raise NotAPreparedSet(f"{info_path}: unreadable ({e}); delete the folder and prepare it again.") from e
        if info.get("format") != FORMAT or info.get("version") != FORMAT_VERSION:
            raise NotAPreparedSet(
                f"{info_path}: format {info.get('format')!r} v{info.get('version')}, expected {FORMAT!r} "
                f"v{FORMAT_VERSION}; prepare the data again with this version of the course."
            )
        arrays = {}
        for name in _ARRAYS:
            p = folder / f"{name}.npy"
            if not p.exists():
                raise NotAPreparedSet(f"{folder}: {p.name} is missing; the set is incomplete, prepare it again.")
            try:  # never unpickled: an object array is refused here
                arrays[name] = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise NotAPreparedSet(f"{p}: not a plain numeric array ({e}); the set is damaged or not made by "
                                      "`upgan prepare`: prepare it again.") from e
            if arrays[name].dtype.kind not in "buif" or arrays[name].ndim == 0:
                raise NotAPreparedSet(f"{p}: dtype {arrays[name].dtype}, shape {arrays[name].shape} is not a prepared "
                                      "set's array; prepare it again.")
            if len(arrays[name]) != info["count"]:
                raise NotAPreparedSet(f"{p}: {len(arrays[name])} rows but faceset.json says {info['count']}; prepare it again.")
        return cls(faces=arrays["faces"], masks=arrays["masks"], landmarks68=arrays["landmarks68"],
                   **_label_fields(arrays["labels"]), sources=list(info["sources"]), meta=dict(info.get("meta", {})))

    @staticmethod
    def concatenate(sets: list["FaceSet"]) -> "FaceSet":
        return FaceSet(
            faces=np.concatenate([s.faces for s in sets]),
            masks=np.concatenate([s.masks for s in sets]),
            landmarks68=np.concatenate([s.landmarks68 for s in sets]),
            age=np.concatenate([s.age for s in sets]),
            gender=np.concatenate([s.gender for s in sets]),
            race=np.concatenate([s.race for s in sets]),
            identity=np.concatenate([s.identity for s in sets]),
            sources=[x for s in sets for x in s.sources],
            meta=dict(sets[0].meta) if sets else {},
        )


def _label_fields(labels: np.ndarray) -> dict:
    """The inverse of :meth:`FaceSet.labels_array`."""
    labels = np.asarray(labels)
    return {"age": labels[:, 0], "gender": labels[:, 1], "race": labels[:, 2], "identity": labels[:, 3]}


def pack(fs: FaceSet, path: str | os.PathLike, quality: int = 80) -> dict:
    """Write `fs` as one packed ``.npz`` file (see the module doc) and return a summary: faces,
    bytes, MiB, and the faces' PSNR after the WebP round trip. Written atomically."""
    from PIL import Image

    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: a packed face set is an .npz file; name it e.g. {path.with_suffix('.npz').name}")
    faces = np.asarray(fs.faces)
    chunks, offsets, sq_err = [], [0], 0.0
    for face in faces:
        buf = io.BytesIO()
        Image.fromarray(face).save(buf, "WEBP", quality=int(quality), method=4)
        data = buf.getvalue()
        back = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)
        sq_err += float(((back - face) ** 2).sum())
        chunks.append(data)
        offsets.append(offsets[-1] + len(data))
    masks = np.asarray(fs.masks)
    if masks.size and masks.max() > 1:
        raise ValueError("masks must hold 0/1 values to be packed")
    info = {"format": PACKED_FORMAT, "version": PACKED_VERSION, "count": len(fs), "size": fs.size,
            "quality": int(quality), "sources": list(fs.sources), "meta": fs.meta}
    arrays = {
        "faces_webp": np.frombuffer(b"".join(chunks), dtype=np.uint8),
        "faces_offsets": np.asarray(offsets, dtype=np.int64),
        "masks_bits": np.packbits(masks.astype(bool), axis=-1),
        "landmarks68": np.asarray(fs.landmarks68, dtype=np.float32),
        "labels": fs.labels_array(),
        "info": np.frombuffer(json.dumps(info).encode(), dtype=np.uint8),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    mse = sq_err / max(1, faces.size)
    psnr = float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))
    n_bytes = path.stat().st_size
    return {"faces": len(fs), "bytes": n_bytes, "mib": n_bytes / 2 ** 20, "quality": int(quality), "psnr_db": psnr,
            "path": str(path)}


def load_packed(path: str | os.PathLike) -> FaceSet:
    """Decode a packed ``.npz`` face set (:func:`pack`) into memory."""
    from PIL import Image

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "info" not in z.files:
                raise NotAPreparedSet(f"{path}: not a packed face set (no 'info' entry); make one with "
                                      f"`upgan pack PREPARED_DIR {path.name}` or pass a prepared folder")
            info = json.loads(bytes(z["info"]).decode())
            if info.get("format") != PACKED_FORMAT or info.get("version") != PACKED_VERSION:
                raise NotAPreparedSet(f"{path}: format {info.get('format')!r} v{info.get('version')}, expected "
                                      f"{PACKED_FORMAT!r} v{PACKED_VERSION}; pack it again with this version")
            blob, offsets = z["faces_webp"], z["faces_offsets"]
            n, size = int(info["count"]), int(info["size"])
            if len(offsets) != n + 1:
                raise NotAPreparedSet(f"{path}: {len(offsets) - 1} face offsets for {n} faces; the file is damaged, pack it again")
            faces = np.empty((n, size, size, 3), dtype=np.uint8)
            for i in range(n):
                faces[i] = np.asarray(Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
            masks = np.unpackbits(z["masks_bits"], axis=-1, count=size)
            landmarks, labels = z["landmarks68"], z["labels"]
    except NotAPreparedSet:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, KeyError) as e:
        raise NotAPreparedSet(f"{path}: unreadable as a packed face set ({type(e).__name__}: {e}); "
                              "pack it again or pass a prepared folder") from e
    return FaceSet(faces=faces, masks=masks, landmarks68=landmarks, **_label_fields(labels), sources=list(info["sources"]),
                   meta={**info.get("meta", {}), "packed": {"file": str(path), "quality": info["quality"]}})


def split_photos_by_identity(identity: np.ndarray, test_fraction: float = 0.3, seed: int = 0,
                             min_photos: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Closed-set split: every identity appears in both train and test (held-out photos).

    Raises a clear error when an identity has fewer than ``min_photos`` photos instead of
    silently dropping it.
    """
    identity = np.asarray(identity)
    if np.any(identity < 0):
        raise ValueError(f"{np.sum(identity < 0)} faces have no identity label; identification needs labelled faces")
    rng = np.random.default_rng(seed)
    train, test = [], []
    ids, counts = np.unique(identity, return_counts=True)
    small = ids[counts < min_photos]
    if len(small):
        raise ValueError(
            f"{len(small)} identities have fewer than {min_photos} photos (e.g. identity {small[0]}): a closed-set "
            "split needs at least one photo to train on and one to test; remove them or add photos"
        )
    for ident in ids:
        idx = rng.permutation(np.flatnonzero(identity == ident))
        n_test = min(len(idx) - 1, max(1, int(round(len(idx) * test_fraction))))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(test, dtype=np.int64))


# ---------------------------------------------------------------------------- `upgan pack`
def add_arguments(p) -> None:
    p.add_argument("src", help="prepared face set folder (`upgan prepare ... --out DIR`)")
    p.add_argument("out", help="packed file to write, *.npz")
    p.add_argument("--quality", type=int, default=80, help="WebP quality of the faces, 1..100 (default 80)")


def run(args) -> int:
    try:
        fs = FaceSet.load(args.src)
        summary = pack(fs, args.out, quality=args.quality)
    except (NotAPreparedSet, ValueError) as e:
        print(f"upgan pack: {e}")
        return 2
    print(f"packed {summary['faces']} faces into {summary['path']}: {summary['mib']:.1f} MiB, "
          f"WebP quality {summary['quality']}, faces PSNR {summary['psnr_db']:.1f} dB "
          "(masks, landmarks, labels exact)")
    return 0
