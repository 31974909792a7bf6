"""The paper's Figure 1 for the course: photos in the top row, each obscuration in a row below.

* :func:`figure1_photos` - the photos and, for each, the finder that finds its faces: on the smoke
  preset SynthFaces heads pasted into procedural "photos" (:func:`smoke_photos`) with a stand-in
  detector that knows where the face is (dlib does not find drawn faces); on the full preset
  identity photos, one person each, and dlib's detector.
* :class:`KnownPhotos` - one stand-in detector for a whole set of such photos, for code that takes
  a single finder for many photos (``obscure_path`` over a folder): it recognises which photo it
  is shown (by its pixels, so a JPEG round trip is fine) and returns that photo's faces.
* :func:`figure1_rows` - every obscurer on every photo: the rows of the figure and what was done
  to each face (:func:`action_counts` tallies it); :func:`plot_figure1` draws the figure.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .finders import DlibFinder, KnownFaces
from .swap import compose_scene


class KnownPhotos:
    """A finder for a known set of photos: ``detect(rgb)`` returns the faces that ``finders[i]``
    finds, where photo ``i`` is the one of the same size closest to ``rgb`` (mean absolute pixel
    difference). A photo of a size none of them has is refused (it is not one of them)."""

    def __init__(self, photos, finders):
        if len(photos) != len(finders):
            raise ValueError(f"{len(photos)} photos but {len(finders)} finders: give one finder per photo")
        self.table = [(np.asarray(p, np.float32), fd) for p, fd in zip(photos, finders)]

    def which(self, rgb: np.ndarray) -> int:
        """Index of the known photo that ``rgb`` is."""
        rgb = np.asarray(rgb, np.float32)
        err = [np.abs(rgb - p).mean() if p.shape == rgb.shape else np.inf for p, _ in self.table]
        if not np.isfinite(min(err, default=np.inf)):
            raise ValueError(f"a photo of shape {rgb.shape} is none of the {len(self.table)} known photos")
        return int(np.argmin(err))

    def detect(self, rgb: np.ndarray) -> list:
        return self.table[self.which(rgb)][1].detect(rgb)


def smoke_photos(people, n: int, seed: int = 0, size=(320, 400)) -> tuple[list[np.ndarray], list[KnownFaces]]:
    """``n`` synthetic portraits: one of ``people`` (a SynthFaces set, chosen by ``seed``) per photo,
    150-230 px wide and turned by up to 10 degrees (:func:`upgan_lib.swap.compose_scene`), with a
    :class:`~upgan_lib.finders.KnownFaces` for each. Returns ``(photos, finders)``."""
    rng = np.random.default_rng(seed)
    width, height = size
    scenes = [compose_scene(people, [int(i)], size=size, centres=[(width / 2, height * 0.475)],
                            face_widths=[rng.uniform(150, 230)], angles=[rng.uniform(-10, 10)], seed=seed + int(i))
              for i in rng.choice(len(people), n, replace=False)]
    return [s.image for s in scenes], [KnownFaces(s.faces) for s in scenes]


def figure1_photos(preset: str, n: int, seed: int = 0, people=None, data_root=None) -> tuple[list, list]:
    """The figure's photos and their finders: :func:`smoke_photos` of ``people`` on the smoke preset;
    else ``n`` identity photos from the data root, one person each
    (:func:`upgan_lib.identity_change.sample_identity_photos`), searched by dlib's detector."""
    if preset == "smoke":
        if people is None:
            raise ValueError("the smoke preset draws its photos from SynthFaces: pass people=make_synthfaces(...)")
        return smoke_photos(people, n, seed)
    from .identity_change import sample_identity_photos
    from .prepare import default_source

    photos = [img for _, _, img in sample_identity_photos(default_source("identities", data_root), n, seed=seed)]
    finder = DlibFinder()
    return photos, [finder] * len(photos)


def figure1_rows(photos, finders, obscurers: dict) -> tuple[dict[str, list], dict[str, list[str]]]:
    """Every obscurer (name -> :class:`upgan_lib.obscure.Obscurer`) on every photo, each with that
    photo's finder. Returns ``(rows, actions)``: rows ``{"original": photos, name: obscured photos}``
    in the order given, actions ``{name: [what was done to each face found, photo by photo]}``."""
    if len(photos) != len(finders):
        raise ValueError(f"{len(photos)} photos but {len(finders)} finders: give one finder per photo")
    rows, actions = {"original": list(photos)}, {}
    for name, obscurer in obscurers.items():
        results = [obscurer.with_finder(fd).obscure(p) for p, fd in zip(photos, finders)]
        rows[name] = [r.image for r in results]
        actions[name] = [face["action"] for r in results for face in r.faces]
    return rows, actions


def action_counts(actions: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    """``{name: {action: count}}`` with the actions sorted, e.g. ``{"blur 15": {"blurred": 4}}``."""
    return {name: dict(sorted(Counter(acts).items())) for name, acts in actions.items()}


def plot_figure1(rows: dict[str, list], title: str = "Figure 1: originals above, obscured below", scale: float = 2.2):
    """The rows of :func:`figure1_rows` as a grid, one row per method (labelled), one column per photo."""
    import matplotlib.pyplot as plt

    ncol = max(len(r) for r in rows.values())
    fig, axes = plt.subplots(len(rows), ncol, figsize=(scale * ncol, 1.2 * scale * len(rows)), squeeze=False)
    for i, (name, imgs) in enumerate(rows.items()):
        for j in range(ncol):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(imgs):
                ax.imshow(imgs[j])
        axes[i][0].set_ylabel(name)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
