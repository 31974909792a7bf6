"""Small synthetic stand-ins for the raw data sets, written into tmp folders by the data-pipeline tests.

Faces are SynthFaces drawings (dlib finds most of them once they are enlarged); only faces the
plain detector finds are used where a test needs a face to be kept, so the tests are
deterministic. Nothing here touches real photos or the network.
"""
from __future__ import annotations

import io
import tarfile
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

UTK_MALFORMED = (
    "24_0_1_20170116220224657 .jpg.chip.jpg",
    "55_0_0_20170116232725357jpg.chip.jpg",
    "39_1_20170116174525125.jpg.chip.jpg",
    "61_1_20170109142408075.jpg.chip.jpg",
    "61_1_20170109150557335.jpg.chip.jpg",
)


@lru_cache(maxsize=4)
def detectable_faces(n: int = 12, size: int = 200, seed: int = 3):
    """(images uint8 (n, size, size, 3), landmarks68 (n, 68, 2) in those images, identities (n,), FaceSet):
    SynthFaces on a wider canvas (a quarter of the face's side added around it, as a photo would
    have), enlarged to ``size``, that dlib's plain HOG detector finds."""
    from upgan_lib.landmarks import default_landmarker
    from upgan_lib.synthfaces import make_synthfaces

    fs = make_synthfaces(n_identities=3 * n, photos_per_identity=2, seed=seed)
    lm = default_landmarker()
    imgs, lms, ids, keep = [], [], [], []
    pad = fs.size // 4
    f = size / (fs.size + 2 * pad)
    for i in range(len(fs)):
        wide = cv2.copyMakeBorder(np.ascontiguousarray(fs.faces[i]), pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        img = cv2.resize(wide, (size, size), interpolation=cv2.INTER_CUBIC)
        if lm.detect(img, 0, 0.3):  # margin above the threshold 0 the pipeline uses
            imgs.append(img)
            lms.append((fs.landmarks68[i] + pad) * f)
            ids.append(int(fs.identity[i]))
            keep.append(i)
        if len(imgs) == n:
            break
    assert len(imgs) == n, "SynthFaces gave too few detectable faces for the test fixtures"
    return np.stack(imgs), np.stack(lms).astype(np.float32), np.array(ids), fs.subset(keep)


def jpeg_bytes(rgb: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def flat_image(size: int = 200, value: int = 128) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def write_fake_utkface(root: Path, n_good: int = 4, with_bad: bool = True) -> dict:
    """A ``UTKFace/`` folder: ``n_good`` detectable faces with well-formed names, and (``with_bad``)
    the five malformed names, a corrupt and a truncated JPEG, a grey-scale JPEG, an RGBA PNG, a
    non-face image and a README. Returns what a correct preparation should find."""
    imgs, _, _, fs = detectable_faces()
    folder = root / "UTKFace"
    folder.mkdir(parents=True, exist_ok=True)
    good = []
    for i in range(n_good):
        name = f"{20 + i}_{i % 2}_{i % 5}_2017011612345678{i}.jpg.chip.jpg"
        (folder / name).write_bytes(jpeg_bytes(imgs[i]))
        good.append(name)
    expect = {"good": good, "kept": n_good, "inputs": n_good, "skipped": {}, "repaired": []}
    if not with_bad:
        return expect
    for j, name in enumerate(UTK_MALFORMED):
        (folder / name).write_bytes(jpeg_bytes(imgs[n_good + j]))
    k = n_good + len(UTK_MALFORMED)
    (folder / "30_0_0_20170116000000001.jpg.chip.jpg").write_bytes(b"<html>404 Not Found</html>")  # a failed download
    whole = jpeg_bytes(imgs[k])
    (folder / "31_1_0_20170116000000002.jpg.chip.jpg").write_bytes(whole[: len(whole) // 2])
    grey = cv2.cvtColor(imgs[k + 1], cv2.COLOR_RGB2GRAY)
    (folder / "32_0_2_20170116000000003.jpg.chip.jpg").write_bytes(jpeg_bytes(grey))
    rgba = np.dstack([imgs[k + 2], np.full(imgs[k + 2].shape[:2], 200, np.uint8)])
    (folder / "33_1_3_20170116000000004.png").write_bytes(png_bytes(rgba))
    (folder / "34_0_4_20170116000000005.jpg.chip.jpg").write_bytes(jpeg_bytes(flat_image()))
    (folder / "README.txt").write_text("not an image")
    expect.update(
        inputs=n_good + 5 + 5, kept=n_good + 2 + 2,
        skipped={"race_missing": 3, "corrupt": 1, "truncated": 1, "no_face": 1},
        repaired=list(UTK_MALFORMED[:2]),
        conversions={"grayscale": 1, "alpha_dropped": 1},
    )
    return expect


def embed(img: np.ndarray, canvas: int, scale: float, angle: float, centre, rng: np.random.Generator):
    """Place ``img`` rotated/scaled at ``centre`` of a noisy ``canvas`` x ``canvas`` background; returns
    (photo, 2x3 matrix from img to photo)."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += np.asarray(centre, np.float64) - np.array([w / 2, h / 2])
    bg = np.clip(rng.normal(120, 25, (canvas, canvas, 3)), 0, 255).astype(np.uint8)
    bg = cv2.GaussianBlur(bg, (0, 0), 3)
    out = cv2.warpAffine(img, m, (canvas, canvas), dst=bg.copy(), borderMode=cv2.BORDER_TRANSPARENT)
    return out, m


def write_identity_folders(root: Path, n_ids: int = 3, per_id: int = 2, seed: int = 0) -> dict:
    """``root/people/<name>/<k>.jpg``: detectable synthetic faces placed in larger photos, one folder per
    identity, plus one loose photo in ``people/``. Returns the expected labels and transforms."""
    imgs, lms, _, _ = detectable_faces()
    rng = np.random.default_rng(seed)
    base = root / "people"
    expect = {"names": {}, "landmarks": {}}
    k = 0
    for i in range(n_ids):
        d = base / f"person_{chr(ord('a') + i)}"
        d.mkdir(parents=True, exist_ok=True)
        for j in range(per_id):
            photo, m = embed(imgs[k], 320, rng.uniform(0.8, 1.1), rng.uniform(-15, 15), rng.uniform(130, 190, 2), rng)
            name = f"{d.name}_{j:04d}.jpg"
            (d / name).write_bytes(jpeg_bytes(photo, 95))
            rel = f"people/{d.name}/{name}"
            expect["names"][rel] = i
            expect["landmarks"][rel] = lms[k] @ m[:, :2].T + m[:, 2]
            k += 1
    (base / "loose.jpg").write_bytes(jpeg_bytes(imgs[k]))
    expect["loose"] = "people/loose.jpg"
    return expect


def write_celeba_layout(root: Path, n_ids: int = 2, per_id: int = 2, missing: int = 1, seed: int = 1) -> dict:
    """``root/celeba-identities/{identity_CelebA.txt, img_celeba/NNNNNN.jpg}`` with ``missing`` listed but
    absent photos, one unlisted photo and one malformed line."""
    imgs, _, _, _ = detectable_faces()
    rng = np.random.default_rng(seed)
    base = root / "celeba-identities"
    (base / "img_celeba").mkdir(parents=True, exist_ok=True)
    lines, labels, k = ["image identity"], {}, 0
    for i in range(n_ids):
        ident = 1000 + 7 * i
        for j in range(per_id):
            name = f"{100 + k:06d}.jpg"
            photo, _ = embed(imgs[k], 300, 1.0, rng.uniform(-10, 10), (150, 150), rng)
            (base / "img_celeba" / name).write_bytes(jpeg_bytes(photo))
            lines.append(f"{name} {ident}")
            labels[f"celeba-identities/img_celeba/{name}"] = ident
            k += 1
    missing_names = []
    for m in range(missing):
        name = f"{900 + m:06d}.jpg"
        lines.append(f"{name} 1000")
        missing_names.append(f"celeba-identities/img_celeba/{name}")
    lines.append("this line is broken")
    (base / "img_celeba" / "999999.jpg").write_bytes(jpeg_bytes(imgs[k]))
    (base / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")
    return {"labels": labels, "missing": missing_names, "unlisted": ["celeba-identities/img_celeba/999999.jpg"]}


def make_tar_gz(folder: Path, archive: Path, arcname: str | None = None) -> Path:
    with tarfile.open(archive, "w:gz") as t:
        t.add(folder, arcname=arcname or folder.name)
    return archive
