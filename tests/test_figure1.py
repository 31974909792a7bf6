"""Figure 1 (chapter 10): the synthetic photos, the stand-in detector for a set of photos, the rows."""
import io

import numpy as np
import pytest
from PIL import Image

from upgan_lib import figure1 as F
from upgan_lib.obscure import ObscureConfig, Obscurer
from upgan_lib.synthfaces import make_synthfaces


@pytest.fixture(scope="module")
def people():
    return make_synthfaces(6, 1, seed=0)


@pytest.fixture(scope="module")
def photos(people):
    return F.smoke_photos(people, 3, seed=0)


def _jpeg(rgb):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=92)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_smoke_photos_hold_one_known_face_each_and_repeat_with_the_seed(people, photos):
    imgs, finders = photos
    assert len(imgs) == len(finders) == 3 and all(img.shape == (400, 320, 3) for img in imgs)
    for img, fd in zip(imgs, finders):
        (face,) = fd.detect(img)
        x0, y0, x1, y1 = face.box
        assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 400 and face.landmarks68.shape == (68, 2)
    again, _ = F.smoke_photos(people, 3, seed=0)
    other, _ = F.smoke_photos(people, 3, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(imgs, again))
    assert not all(np.array_equal(a, b) for a, b in zip(imgs, other))
    with pytest.raises(ValueError, match="people="):
        F.figure1_photos("smoke", 2)


def test_known_photos_finds_each_photos_own_face_after_a_jpeg_round_trip(photos):
    imgs, finders = photos
    known = F.KnownPhotos(imgs, finders)
    for k, img in enumerate(imgs):
        assert known.which(_jpeg(img)) == k
        got = known.detect(_jpeg(img))
        np.testing.assert_array_equal(got[0].landmarks68, finders[k].detect(img)[0].landmarks68)
    with pytest.raises(ValueError, match="none of the 3 known photos"):
        known.detect(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="one finder per photo"):
        F.KnownPhotos(imgs, finders[:2])


def test_rows_obscure_each_face_in_its_box_and_count_what_was_done(photos):
    imgs, finders = photos
    obscurers = {"blur 15": Obscurer(ObscureConfig(method="blur", strength=15)),
                 "grey": Obscurer(ObscureConfig(method="gray"))}
    rows, actions = F.figure1_rows(imgs, finders, obscurers)
    assert list(rows) == ["original", "blur 15", "grey"] and all(len(r) == 3 for r in rows.values())
    assert all(a is b for a, b in zip(rows["original"], imgs))
    for name in obscurers:
        for img, out, fd in zip(imgs, rows[name], finders):
            x0, y0, x1, y1 = (int(round(v)) for v in fd.detect(img)[0].box)
            changed = np.any(out != img, axis=2)
            assert changed[y0:y1, x0:x1].mean() > 0.5, name  # the face is obscured
            assert changed[:, :max(x0 - 40, 1)].sum() == 0 and changed[min(y1 + 40, 399):].sum() == 0, name  # the rest is not
    counts = F.action_counts(actions)
    assert counts["grey"] == {"greyed": 3} and sum(counts["blur 15"].values()) == 3 and "greyed" not in counts["blur 15"]
    assert F.action_counts({"a": ["x", "y", "x"]}) == {"a": {"x": 2, "y": 1}}


def test_figure_has_a_labelled_row_per_method():
    import matplotlib

    matplotlib.use("Agg")
    img = np.zeros((40, 30, 3), np.uint8)
    fig = F.plot_figure1({"original": [img] * 4, "blur": [img] * 4, "UP-GAN": [img] * 4})
    assert len(fig.axes) == 12 and [fig.axes[4 * i].get_ylabel() for i in range(3)] == ["original", "blur", "UP-GAN"]
    assert all(len(ax.images) == 1 for ax in fig.axes)
