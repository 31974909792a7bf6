"""Is the obscured face another person? The identity-change rate, with dlib's recogniser as judge.

:func:`identity_change` obscures the same detected faces with every method it is given and
counts the faces that dlib's face recogniser (:class:`upgan_lib.recognise.FaceRecogniser`) no
longer takes for the person they were. :func:`sample_identity_photos` picks the photos it is
measured on from the identity archive (real data: never written into the repository).
"""
from __future__ import annotations

import numpy as np

from .finders import KnownFaces
from .identities import list_identity_photos
from .rawfiles import BadImage, RawSource, decode_image
from .recognise import FaceRecogniser


# ---------------------------------------------------------------------------------------------
# identity photos
# ---------------------------------------------------------------------------------------------
def sample_identity_photos(source, n: int, seed: int = 0, max_side: int | None = None) -> list:
    """``n`` identity photos, one person each as long as there are people (then round-robin),
    chosen by ``seed``: list of ``(name, identity, rgb uint8)``. ``source``: the identity archive
    or folder (``celeba-identities.tar.gz``; layout in ``upgan_lib.identities``). Unreadable photos
    are skipped (they are few; the returned list may be shorter)."""
    src = source if isinstance(source, RawSource) else RawSource(source)
    chosen = _round_robin(list_identity_photos(src).photos, n, seed)
    ident = {p.name: p.identity for p in chosen}
    got = {}
    for name, data in src.read_many([p.name for p in chosen]):
        if isinstance(data, Exception):
            continue
        try:
            got[name] = decode_image(data, name, max_side=max_side)[0]
        except BadImage:
            continue
    return [(p.name, ident[p.name], got[p.name]) for p in chosen if p.name in got]


def _round_robin(photos: list, n: int, seed: int) -> list:
    """``n`` of ``photos``: people in a random order, one photo of each per round."""
    rng = np.random.default_rng(seed)
    by_id: dict[int, list] = {}
    for p in photos:
        by_id.setdefault(p.identity, []).append(p)
    ids = list(rng.permutation(sorted(by_id)))
    queues = {i: list(rng.permutation(len(by_id[i]))) for i in ids}
    chosen = []
    while len(chosen) < n and any(queues.values()):
        for i in ids:
            if queues[i] and len(chosen) < n:
                chosen.append(by_id[i][queues[i].pop(0)])
    return chosen


# ---------------------------------------------------------------------------------------------
# the rate
# ---------------------------------------------------------------------------------------------
def identity_change(photos, obscurers: dict, finder, recogniser=None, threshold: float = FaceRecogniser.SAME_PERSON,
                    progress=None) -> dict:
    """How often each method turns a face into 'another person' for dlib's recogniser.

    Faces are detected once per photo with ``finder``; every method in ``obscurers`` (label ->
    :class:`Obscurer`) obscures exactly those faces; the judge computes the descriptor of the
    original and of the obscured photo in the original box (an attacker knows where the face
    was). A face counts as changed when the distance exceeds ``threshold``. Returns per method:
    ``another_person`` (faces the method replaced/blurred/pixelated *and* changed, over all faces:
    the UP-GAN target, a greyed face does not count), ``rate`` (changed over all faces: a greyed
    face is obscured, fail closed, and counts), ``rate_replaced`` (changed over the faces not
    greyed), ``greyed``, ``mean_distance``; plus counts of photos and faces.
    """
    rec = recogniser or FaceRecogniser()
    stats = {name: {"changed": 0, "faces": 0, "done": 0, "done_changed": 0, "greyed": 0, "distances": []}
             for name in obscurers}
    n_faces = n_photos = no_face = 0
    for k, photo in enumerate(photos):
        n_photos += 1
        found = finder.detect(photo)
        if not found:
            no_face += 1
            continue
        n_faces += len(found)
        known = KnownFaces(found)
        d0 = [rec.descriptor(photo, f.box) for f in found]
        for name, ob_ in obscurers.items():
            res = ob_.with_finder(known).obscure(photo)
            _count(stats[name], rec, res, found, d0, threshold)
        if progress:
            progress(k + 1, n_faces)
    out = {"photos": n_photos, "photos_without_face": no_face, "faces": n_faces, "threshold": threshold, "methods": {}}
    for name, st in stats.items():
        out["methods"][name] = _rates(st)
    return out


def _count(st: dict, rec, res, found: list, originals: list, threshold: float) -> None:
    """Add one obscured photo's faces to a method's tallies ``st``."""
    for f, rep, a in zip(found, res.faces, originals):
        dist = float(np.linalg.norm(rec.descriptor(res.image, f.box) - a))
        changed = dist > threshold
        st["faces"] += 1
        st["changed"] += changed
        st["distances"].append(dist)
        if rep.get("action") == "greyed":
            st["greyed"] += 1
        else:
            st["done"] += 1
            st["done_changed"] += changed


def _rates(st: dict) -> dict:
    """A method's tallies as the rates :func:`identity_change` reports."""
    return {
        "faces": st["faces"], "rate": st["changed"] / st["faces"] if st["faces"] else float("nan"),
        "another_person": st["done_changed"] / st["faces"] if st["faces"] else float("nan"),
        "rate_replaced": st["done_changed"] / st["done"] if st["done"] else float("nan"),
        "greyed": st["greyed"], "mean_distance": float(np.mean(st["distances"])) if st["distances"] else float("nan"),
    }
