"""The interactive chapter: edit what UP-GAN keeps of a face and watch the generator redraw it.

The generator sees only the 17-number utility vector (:mod:`upgan_lib.utility`), so editing
those numbers is the whole interface: age, gender and race sliders change the 3 attributes;
landmark controls move the 7 points - eye distance, mouth opening, head roll and yaw (with
presets), or one point at a time. Everything that turns an edit into a new utility vector and
an image lives here as plain functions (:func:`edit_points`, :func:`edit_utility`,
:func:`render_utility`), testable without a browser; :class:`FaceEditor` and
:class:`MethodComparison` only wire them to ipywidgets.

Geometry of the edits, all in the aligned 128x128 frame (pixels):

* ``eye_distance``: factor on the distance between the two eye centres, about their midpoint.
* ``mouth_open``: pixels added between the lips (top point up, bottom point down by half each).
* ``yaw``: degrees of head turn. The 7 points get depths from a generic head (nose tip 18 px in
  front of the eyes, lips 6-8 px, mouth corners 2 px at eye distance 37 px), are rotated about
  the vertical axis and projected orthographically; the eyes are then put back where they were
  (similarity on the two eye centres), because training faces are aligned on their eyes - so a
  turned head shows as nose and mouth sliding sideways, as it does in UTKFace crops.
* ``roll``: degrees of in-plane rotation about the eyes' midpoint.
* ``moved``: points placed directly, ``{index: (x, y)}``, applied last.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .align import CANONICAL_EYE_DISTANCE
from .utility import (GENDER_NAMES, N_POINTS, RACE_NAMES, SEVEN_POINT_NAMES, UTILITY_DIM, decode_utility,
                      encode_utility)

#: eye distance (px) at which POINT_DEPTH is given; depths scale with each face's own eye distance
POINT_DEPTH_EYE_DISTANCE = 37.0
#: depth (towards the camera, aligned px at an eye distance of 37 px) of the 7 points
POINT_DEPTH = np.array([0.0, 0.0, 18.0, 2.0, 2.0, 8.0, 6.0], np.float64)
#: pose presets: name -> (roll, yaw) degrees
POSE_PRESETS = {
    "frontal": (0.0, 0.0),
    "turned left 20 deg": (0.0, -20.0),
    "turned right 20 deg": (0.0, 20.0),
    "turned left 40 deg": (0.0, -40.0),
    "turned right 40 deg": (0.0, 40.0),
    "tilted left 15 deg": (-15.0, 0.0),
    "tilted right 15 deg": (15.0, 0.0),
}


@dataclass(frozen=True)
class UtilityEdit:
    """An edit of a utility vector; the defaults change nothing. Attributes ``None`` keep the
    base value; otherwise age in years, gender 0 (male) .. 1 (female), race 0 .. 4 (UTKFace
    codes; fractional values interpolate, the generator saw only whole ones)."""

    age: float | None = None
    gender: float | None = None
    race: float | None = None
    eye_distance: float = 1.0
    mouth_open: float = 0.0
    roll: float = 0.0
    yaw: float = 0.0
    moved: dict = field(default_factory=dict)


def _rotate(pts: np.ndarray, centre: np.ndarray, degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    d = pts - centre
    return centre + d @ np.array([[c, s], [-s, c]])  # positive = clockwise on screen (y down)


def edit_points(points7: np.ndarray, edit: UtilityEdit) -> np.ndarray:
    """Apply the landmark part of ``edit`` to (7, 2) points (aligned px); returns a new array."""
    p = np.asarray(points7, np.float64).reshape(N_POINTS, 2).copy()
    eyes0 = p[:2].copy()
    mid = eyes0.mean(0)
    eye_d = float(np.linalg.norm(eyes0[1] - eyes0[0])) or CANONICAL_EYE_DISTANCE
    if edit.yaw:
        t = np.deg2rad(edit.yaw)
        z = POINT_DEPTH * (eye_d / POINT_DEPTH_EYE_DISTANCE)
        x = mid[0] + (p[:, 0] - mid[0]) * np.cos(t) + z * np.sin(t)
        q = np.stack([x, p[:, 1]], axis=1)
        # re-align on the eyes, as the training faces are: similarity taking q's eyes to eyes0
        a, b = q[1] - q[0], eyes0[1] - eyes0[0]
        k = complex(*b) / complex(*a)
        z_pts = (q[:, 0] - q[0, 0]) + 1j * (q[:, 1] - q[0, 1])
        w = z_pts * k + complex(*eyes0[0])
        p = np.stack([w.real, w.imag], axis=1)
    if edit.eye_distance != 1.0:
        c = p[:2].mean(0)
        p[:2] = c + (p[:2] - c) * float(edit.eye_distance)
    if edit.mouth_open:
        p[5, 1] -= edit.mouth_open / 2.0
        p[6, 1] += edit.mouth_open / 2.0
    if edit.roll:
        p = _rotate(p, p[:2].mean(0), edit.roll)
    for i, xy in edit.moved.items():
        p[int(i)] = xy
    return p.astype(np.float32)


def edit_utility(base: np.ndarray, edit: UtilityEdit, size: int = 128) -> np.ndarray:
    """Base utility (17,) + edit -> new utility (17,) float32 (see module doc for the geometry)."""
    base = np.asarray(base, np.float32).reshape(-1)
    if base.shape != (UTILITY_DIM,):
        raise ValueError(f"a utility vector has {UTILITY_DIM} numbers, got {base.shape}")
    age, gender, race, pts = decode_utility(base, size=size)
    age = age[0] if edit.age is None else edit.age
    gender = gender[0] if edit.gender is None else edit.gender
    race = race[0] if edit.race is None else edit.race
    return encode_utility([age], [gender], [race], edit_points(pts[0], edit)[None], size=size)[0]


def render_utility(generate, utility: np.ndarray, show_points: bool = True, size: int = 128):
    """Run a face source on one utility vector. ``generate``: a torch Generator or a callable
    ``utility (N,17) -> (faces uint8 (N,S,S,3), face probability (N,S,S))``.

    Returns (face uint8 (S,S,3), panel uint8 (S, 2S, 3)): the panel shows the face and, beside
    it, the face inside its mask on grey with the 7 target points (yellow) - where they land on
    the face is how well the generator keeps the utility."""
    faces, prob = _run(generate, np.asarray(utility, np.float32).reshape(1, UTILITY_DIM))
    face, p = faces[0], prob[0]
    grey = np.full_like(face, 128)
    comp = (face * p[..., None] + grey * (1 - p[..., None])).round().astype(np.uint8)
    if show_points:
        _, _, _, pts = decode_utility(utility, size=face.shape[0])
        for x, y in pts[0]:
            cv2.circle(comp, (int(round(float(x))), int(round(float(y)))), 2, (255, 230, 0), -1, cv2.LINE_AA)
    return face, np.concatenate([face, comp], axis=1)


def _run(generate, utility: np.ndarray):
    if hasattr(generate, "parameters") and hasattr(generate, "forward"):
        from .face_sources import GeneratorFaces

        dev = next(generate.parameters()).device
        generate = GeneratorFaces(generate, dev)
    return generate(utility, None)


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """uint8 RGB -> PNG bytes (for ipywidgets.Image), optionally enlarged by an integer ``scale``."""
    img = np.asarray(image)
    if scale > 1:
        img = cv2.resize(img, (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def side_by_side(images, labels=None, height: int = 160, pad: int = 4) -> np.ndarray:
    """Images (uint8 RGB, any sizes) resized to ``height`` and tiled left to right with labels."""
    tiles = []
    for k, img in enumerate(images):
        img = np.asarray(img)
        w = max(1, int(round(img.shape[1] * height / img.shape[0])))
        t = cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA if img.shape[0] > height else cv2.INTER_LINEAR)
        if labels is not None:
            band = np.full((18, w, 3), 255, np.uint8)
            cv2.putText(band, str(labels[k]), (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
            t = np.concatenate([band, t], axis=0)
        tiles.append(t)
    hh = max(t.shape[0] for t in tiles)
    row = [np.pad(tiles[0], ((0, hh - tiles[0].shape[0]), (0, 0), (0, 0)), constant_values=255)]
    for t in tiles[1:]:
        row.append(np.full((hh, pad, 3), 255, np.uint8))
        row.append(np.pad(t, ((0, hh - t.shape[0]), (0, 0), (0, 0)), constant_values=255))
    return np.concatenate(row, axis=1)


# ---------------------------------------------------------------------------------------------
# widgets
# ---------------------------------------------------------------------------------------------
class FaceEditor:
    """Sliders for the utility vector, regenerating the face live.

    ``generate``: trained generator (``train.load_generator``) or face source callable.
    ``base_utility``: (17,) vector to start from (e.g. ``faceset.utility()[i]``).
    ``editor.widget`` is what a notebook displays; ``editor.controls`` maps names to the
    widgets (set ``.value`` to drive it from code); ``editor.face`` is the current image and
    ``editor.utility`` the current vector; ``editor.renders`` counts regenerations.
    """

    def __init__(self, generate, base_utility, size: int = 128, scale: int = 2):
        import ipywidgets as w

        self.generate = generate
        self.base = np.asarray(base_utility, np.float32).reshape(UTILITY_DIM).copy()
        self.size, self.scale = size, scale
        age, gender, race, pts = decode_utility(self.base, size=size)
        self.base_points = pts[0]
        self.moved: dict[int, tuple] = {}
        self.renders = 0
        self._busy = False
        style = {"description_width": "110px"}
        layout = w.Layout(width="340px")
        c = {
            "age": w.FloatSlider(value=float(age[0]), min=1, max=100, step=1, description="age (years)"),
            "gender": w.FloatSlider(value=float(gender[0]), min=0, max=1, step=0.05,
                                    description=f"gender 0 {GENDER_NAMES[0]} .. 1 {GENDER_NAMES[1]}"),
            "race": w.FloatSlider(value=float(race[0]), min=0, max=4, step=0.25, description="race 0..4"),
            "eye_distance": w.FloatSlider(value=1.0, min=0.7, max=1.3, step=0.02, description="eye distance x"),
            "mouth_open": w.FloatSlider(value=0.0, min=-4, max=16, step=0.5, description="mouth open (px)"),
            "pose": w.Dropdown(options=list(POSE_PRESETS), value="frontal", description="pose preset"),
            "roll": w.FloatSlider(value=0.0, min=-30, max=30, step=1, description="roll (deg)"),
            "yaw": w.FloatSlider(value=0.0, min=-45, max=45, step=1, description="yaw (deg)"),
            "point": w.Dropdown(options=[(n, i) for i, n in enumerate(SEVEN_POINT_NAMES)], value=0, description="move point"),
            "x": w.FloatSlider(value=float(pts[0, 0, 0]), min=0, max=size - 1, step=0.5, description="point x"),
            "y": w.FloatSlider(value=float(pts[0, 0, 1]), min=0, max=size - 1, step=0.5, description="point y"),
            "reset": w.Button(description="reset"),
        }
        for k, v in c.items():
            if hasattr(v, "style") and not isinstance(v, w.Button):
                v.style = style
                v.layout = layout
        c["race"].description = "race " + "/".join(f"{i}{n[0]}" for i, n in enumerate(RACE_NAMES))
        self.controls = c
        self.image = w.Image(format="png")
        self.text = w.HTML()
        for k in ("age", "gender", "race", "eye_distance", "mouth_open", "roll", "yaw"):
            c[k].observe(self._changed, names="value")
        c["pose"].observe(self._pose, names="value")
        c["point"].observe(self._point_selected, names="value")
        c["x"].observe(self._point_moved, names="value")
        c["y"].observe(self._point_moved, names="value")
        c["reset"].on_click(lambda _: self.reset())
        left = w.VBox([w.HTML("<b>attributes</b>"), c["age"], c["gender"], c["race"],
                       w.HTML("<b>landmarks</b>"), c["eye_distance"], c["mouth_open"], c["pose"], c["roll"], c["yaw"],
                       c["point"], c["x"], c["y"], c["reset"]])
        self.widget = w.HBox([left, w.VBox([self.image, self.text])])
        self.update()

    # ---------------------------------------------------------------- state
    def edit(self) -> UtilityEdit:
        c = self.controls
        return UtilityEdit(age=c["age"].value, gender=c["gender"].value, race=c["race"].value,
                           eye_distance=c["eye_distance"].value, mouth_open=c["mouth_open"].value,
                           roll=c["roll"].value, yaw=c["yaw"].value, moved=dict(self.moved))

    @property
    def utility(self) -> np.ndarray:
        return edit_utility(self.base, self.edit(), size=self.size)

    def update(self) -> None:
        """Regenerate the face from the current controls."""
        u = self.utility
        self.face, self.panel = render_utility(self.generate, u, size=self.size)
        self.image.value = png_bytes(self.panel, self.scale)
        self.renders += 1
        a, g, r, _ = decode_utility(u, size=self.size)
        self.text.value = (f"utility: age {a[0]:.0f}, gender {g[0]:.2f}, race {r[0]:.2f}; "
                           f"points moved by hand: {sorted(SEVEN_POINT_NAMES[i] for i in self.moved) or 'none'}")

    def reset(self) -> None:
        self._busy = True
        try:
            age, gender, race, _ = decode_utility(self.base, size=self.size)
            c = self.controls
            c["age"].value, c["gender"].value, c["race"].value = float(age[0]), float(gender[0]), float(race[0])
            c["eye_distance"].value, c["mouth_open"].value = 1.0, 0.0
            c["pose"].value, c["roll"].value, c["yaw"].value = "frontal", 0.0, 0.0
            self.moved = {}
            self._sync_point()
        finally:
            self._busy = False
        self.update()

    # ---------------------------------------------------------------- callbacks
    def _changed(self, change=None) -> None:
        if not self._busy:
            self.update()

    def _pose(self, change) -> None:
        roll, yaw = POSE_PRESETS[change["new"]]
        self._busy = True
        try:
            self.controls["roll"].value, self.controls["yaw"].value = roll, yaw
        finally:
            self._busy = False
        self.update()

    def _sync_point(self) -> None:
        i = self.controls["point"].value
        pts = decode_utility(self.utility, size=self.size)[3][0]
        self.controls["x"].value, self.controls["y"].value = float(pts[i, 0]), float(pts[i, 1])

    def _point_selected(self, change) -> None:
        self._busy = True
        try:
            self._sync_point()
        finally:
            self._busy = False

    def _point_moved(self, change) -> None:
        if self._busy:
            return
        i = self.controls["point"].value
        self.moved[i] = (float(self.controls["x"].value), float(self.controls["y"].value))
        self.update()


class MethodComparison:
    """Side by side: original, then each obscuration method, for a chosen photo.

    ``photos``: list of uint8 RGB photos; ``obscurers``: dict label -> :class:`obscure.Obscurer`
    (e.g. blur, pixelate, UP-GAN). ``comparison.widget`` to display; ``controls["photo"]`` picks
    the photo; ``comparison.panel`` is the current picture and ``comparison.reports`` the
    per-method face reports.
    """

    def __init__(self, photos, obscurers: dict, labels=None, height: int = 200):
        import ipywidgets as w

        self.photos = list(photos)
        self.obscurers = dict(obscurers)
        self.height = height
        names = labels or [f"photo {i}" for i in range(len(self.photos))]
        self.controls = {"photo": w.Dropdown(options=[(n, i) for i, n in enumerate(names)], value=0, description="photo")}
        self.image = w.Image(format="png")
        self.text = w.HTML()
        self.controls["photo"].observe(lambda _: self.update(), names="value")
        self.widget = w.VBox([self.controls["photo"], self.image, self.text])
        self.update()

    def update(self) -> None:
        photo = self.photos[self.controls["photo"].value]
        images, labels, self.reports = [photo], ["original"], {}
        for name, ob in self.obscurers.items():
            res = ob.obscure(photo)
            images.append(res.image)
            labels.append(name)
            self.reports[name] = res.faces
        self.panel = side_by_side(images, labels, height=self.height)
        self.image.value = png_bytes(self.panel)
        def describe(f):
            return f"{f.get('action')}" + (f" ({f['reason']})" if f.get("reason") else "")

        self.text.value = "<br>".join(f"{name}: " + (", ".join(describe(f) for f in fs) or "no face found")
                                      for name, fs in self.reports.items())


def with_updates(edit: UtilityEdit, **changes) -> UtilityEdit:
    """A copy of ``edit`` with fields changed (convenience for notebooks)."""
    return replace(edit, **changes)


__all__ = ["UtilityEdit", "edit_points", "edit_utility", "render_utility", "png_bytes", "side_by_side",
           "FaceEditor", "MethodComparison", "POSE_PRESETS", "POINT_DEPTH", "with_updates"]
