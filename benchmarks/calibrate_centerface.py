"""Measure the constants in upgan_lib/_face_shape.py: dlib's mean 68-point shape and dlib's HOG box,
in the frame where CenterFace's 5 points sit on the alignment template (upgan_lib.detect.POINTS5_128).

Over identity photos where both detectors find exactly one face and agree (same face), each face's
dlib landmarks and HOG box are mapped through the similarity that puts CenterFace's 5 points on the
template; the medians are the constants. Prints the agreement statistics and, with --write, rewrites
upgan_lib/_face_shape.py.

    python benchmarks/calibrate_centerface.py --photos 400 [--write]
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default=None, help="identity archive (default $UPGAN_DATA/celeba-identities.tar.gz)")
    ap.add_argument("--photos", type=int, default=400)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    from upgan_lib.config import data_root
    from upgan_lib.detect import POINTS5_128, CenterFace, _apply, _similarity, iou
    from upgan_lib.landmarks import FaceLandmarker
    from upgan_lib.obscure import sample_identity_photos

    src = a.source or str(data_root() / "celeba-identities.tar.gz")
    photos = sample_identity_photos(src, a.photos, seed=1)
    cf, lm = CenterFace(), FaceLandmarker()
    shapes, boxes = [], []
    for name, _, rgb in photos:
        dets = cf.detect(rgb)
        hog = lm.detect(rgb, upsample=1)
        if len(dets) != 1 or len(hog) != 1 or iou(dets[0].box, hog[0].box) < 0.3:
            continue
        m = _similarity(dets[0].points5, POINTS5_128)
        shapes.append(_apply(m, hog[0].landmarks68))
        x0, y0, x1, y1 = hog[0].box
        c = _apply(m, [[(x0 + x1) / 2, (y0 + y1) / 2]])[0]
        side = (x1 - x0) * np.hypot(m[0, 0], m[1, 0])
        boxes.append([c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2])
    shapes, boxes = np.array(shapes), np.array(boxes)
    mean = np.median(shapes, 0)
    box = np.median(boxes, 0)
    print(f"{len(shapes)} faces of {len(photos)} photos; box {np.round(box, 1).tolist()}; "
          f"shape spread (median point distance) {np.median(np.linalg.norm(shapes - mean, axis=2)):.2f} px of 128")
    if a.write:
        lines = ["\"\"\"Constants measured by benchmarks/calibrate_centerface.py (see upgan_lib.detect).\"\"\"",
                 "import numpy as np", "",
                 f"#: dlib's HOG box (x0, y0, x1, y1) in the 5-point frame ({len(shapes)} faces)",
                 f"DLIB_BOX_128 = ({', '.join(f'{v:.1f}' for v in box)})", "",
                 "#: dlib's median 68-point shape in the 5-point frame", "MEAN_SHAPE68_128 = np.array(["]
        lines += [f"    [{x:.1f}, {y:.1f}]," for x, y in mean]
        lines += ["], np.float64)", ""]
        (ROOT / "upgan_lib" / "_face_shape.py").write_text("\n".join(lines))
        print("wrote upgan_lib/_face_shape.py")


if __name__ == "__main__":
    main()
