"""Nothing left clear: the constructed cases of `upgan_lib.leak` (rotations, group photos with small
faces, a 6000x4000 photo, faces in sunglasses), built at test time from the identity photos, and
identity photos as they are. The judge is dlib's CNN detector, independent of both detectors
`upgan obscure` uses; every face it finds must come out changed. A painted stand-in replaces the
generator: the detection and the fail-closed paths are what is tested here (identity change with a
trained generator is measured by ``benchmarks/leak_rate.py``)."""
import numpy as np
import pytest

from tests.conftest import real_archive

pytestmark = pytest.mark.real_data


class Painted:
    def __call__(self, utility, aligned=None):
        from upgan_lib.align import canonical_points7, face_mask
        from upgan_lib.detect import landmarks68_from_points5

        mask = face_mask(landmarks68_from_points5(canonical_points7()[:5])).astype(np.float32)
        faces = np.zeros((len(utility), 128, 128, 3), np.uint8)
        faces[...] = (40, 200, 60)
        return faces, np.repeat(mask[None], len(utility), 0)


@pytest.fixture(scope="module")
def judge():
    from upgan_lib.leak import Judge

    return Judge(upsample=0)  # the sources' faces are >= 60 px: no upsampling needed (4x faster)


@pytest.fixture(scope="module")
def photos():
    from upgan_lib.obscure import sample_identity_photos

    return [(n, rgb) for n, _, rgb in sample_identity_photos(real_archive("celeba-identities.tar.gz"), 40, seed=7)]


@pytest.fixture(scope="module")
def cases(photos, judge):
    from upgan_lib.landmarks import FaceLandmarker
    from upgan_lib.leak import constructed_cases

    cs = constructed_cases(photos, judge, FaceLandmarker(), seed=7)
    kinds = {c.kind for c in cs}
    assert kinds == {"rotated", "group_small", "group", "large", "sunglasses", "sunglasses_small"}, kinds
    return cs


def _check(cases, obscurer):
    from upgan_lib.leak import measure

    r = measure(cases, obscurer)
    left = [x for x in r.records if x["unchanged"]]
    assert not left, left
    assert r.photos_without_faces == 0
    return r


@pytest.mark.parametrize("kind", ["rotated", "group_small", "group", "large", "sunglasses"])
def test_constructed_cases_leave_no_face_clear(cases, kind):
    from upgan_lib.obscure import ObscureConfig, Obscurer

    sel = [c for c in cases if c.kind.startswith(kind)]
    r = _check(sel, Obscurer(ObscureConfig(), faces=Painted()))
    assert r.faces == sum(len(c.boxes) for c in sel) > 0


def test_small_face_in_sunglasses_is_blurred_not_missed(cases):
    from upgan_lib.obscure import ObscureConfig, Obscurer

    _check([c for c in cases if c.kind == "sunglasses_small"], Obscurer(ObscureConfig(method="blur")))


def test_identity_photos_as_they_are_leave_no_face_clear(photos, judge):
    from upgan_lib.leak import photo_cases
    from upgan_lib.obscure import ObscureConfig, Obscurer

    r = _check(photo_cases(photos[-12:], judge), Obscurer(ObscureConfig(), faces=Painted()))
    assert r.faces >= 10
