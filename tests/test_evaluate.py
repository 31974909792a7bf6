from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from upgan_lib import evaluate as E
from upgan_lib.evaluate import EvalConfig, EvaluationError


class StubFeatures:
    """Cheap stand-in for the Inception features: a fixed random projection of 8x8 thumbnails."""

    def __init__(self, dim=6):
        self.w = np.random.default_rng(0).normal(size=(8 * 8 * 3, dim))

    def __call__(self, faces):
        x = torch.from_numpy(np.asarray(faces)).permute(0, 3, 1, 2).float()
        x = torch.nn.functional.adaptive_avg_pool2d(x, 8).reshape(len(faces), -1).numpy() / 255.0
        return x @ self.w


class StubLandmarker:
    """Finds the 'face' only when the image is not flat (pixelated/blank faces fail)."""

    def __init__(self, l68):
        self.l68 = l68

    def detect(self, rgb):
        if rgb.std() < 30:
            return []
        return [SimpleNamespace(landmarks68=self.l68 + 1.0)]


@pytest.fixture(scope="module")
def smoke():
    cfg = replace(EvalConfig.for_preset("smoke"), attackers=("vgg",), identifier_epochs=1, attribute_epochs=2)
    ids, utk = E.smoke_data(cfg)
    return cfg, ids, utk


def test_presets_and_bad_config():
    assert EvalConfig.for_preset("full").ksame_k == 10
    with pytest.raises(EvaluationError, match="attribute_source"):
        EvalConfig(attribute_source="guess")
    with pytest.raises(EvaluationError, match="attackers"):
        EvalConfig(attackers=("vgg", "human"))


def test_identity_with_one_photo_is_refused(smoke):
    cfg, ids, utk = smoke
    one = ids.subset(np.r_[0, np.flatnonzero(ids.identity != ids.identity[0])])
    with pytest.raises(EvaluationError, match="fewer than 2 photos"):
        E.check_inputs(one, utk)
    with pytest.raises(EvaluationError, match="fewer than 2 photos"):
        E.evaluate(one, utk, cfg, fid_features=StubFeatures())


def test_mismatched_sizes_are_refused(smoke):
    from upgan_lib.synthfaces import make_synthfaces

    cfg, ids, _ = smoke
    small = make_synthfaces(4, 1, seed=1, size=64)
    with pytest.raises(EvaluationError, match="sizes differ"):
        E.check_inputs(ids, small)


def test_utk_too_small_is_refused(smoke):
    cfg, ids, utk = smoke
    with pytest.raises(EvaluationError, match="needs at least"):
        E.split_utk(utk.subset(np.arange(10)), cfg)


def test_run_dir_without_checkpoint(tmp_path):
    with pytest.raises(EvaluationError, match="no such folder"):
        E.load_upgan(tmp_path / "nope")
    (tmp_path / "run").mkdir()
    with pytest.raises(EvaluationError, match="holds no checkpoint"):
        E.load_upgan(tmp_path / "run")


def test_cli_reports_bad_input_without_computing(tmp_path, capsys):
    from upgan_lib.cli import main

    (tmp_path / "run").mkdir()
    rc = main(["evaluate", "--preset", "smoke", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "holds no checkpoint" in capsys.readouterr().out
    rc = main(["evaluate", "--preset", "smoke", "--identities", str(tmp_path / "x"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "both --identities and --utkface" in capsys.readouterr().out
    rc = main(["evaluate", "--preset", "smoke", "--identities", str(tmp_path), "--utkface", str(tmp_path),
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "not a prepared face set" in capsys.readouterr().out
    assert not (tmp_path / "o" / "table1.md").exists()


def test_landmark_errors_count_failures(small_synthfaces):
    d = small_synthfaces
    l68 = np.asarray(d.landmarks68[0])
    faces = np.asarray(d.faces[:4]).copy()
    faces[1] = 128  # flat: no face found
    out = E.landmark_errors(faces, d.points7()[:4] * 0 + E.reduce_68_to_7(l68), StubLandmarker(l68))
    assert out["landmark_failed"] == 1 and out["landmark_n"] == 4
    assert out["landmark_err"] == pytest.approx(np.sqrt(2))


def test_full_table_on_synthfaces_with_stubs(smoke, tmp_path):
    cfg, ids, utk = smoke
    l68 = np.asarray(ids.landmarks68[0])

    def upgan(u):
        return torch.zeros(len(u), 3, 128, 128), torch.zeros(len(u), 2, 128, 128)

    logs = []
    res = E.evaluate(ids, utk, cfg, upgan=upgan, ksame_net=None, fid_features=StubFeatures(),
                     landmarker=StubLandmarker(l68), log=logs.append, out_dir=tmp_path)
    names = [r["method"] for r in res.rows]
    assert names == ["none", "blur-5", "blur-15", "blur-25", "pixelate-5", "pixelate-15", "pixelate-25", "k-same", "up-gan"]
    assert "k-same-net" in res.info["skipped"]
    none = res.row("none")
    # the paired protocol compares each method's photos with the same photos clear: zero for the clear
    # row, then growing with the strength of each obscuration
    for family in ("blur", "pixelate"):
        paired = [none["fid_paired"]] + [res.row(f"{family}-{s}")["fid_paired"] for s in (5, 15, 25)]
        assert paired[0] == pytest.approx(0.0, abs=1e-6) and np.all(np.diff(paired) > 0), (family, paired)
    assert all(np.isfinite([r["fid_utk"], r["kid_utk"], r["fid_realism"]]).all() for r in res.rows)
    assert res.row("pixelate-25")["fid_utk"] != none["fid_utk"]  # the in-distribution protocol sees the obscuration
    assert res.row("up-gan")["landmark_failed"] == cfg.utility_images  # flat faces: nothing re-detected
    # the clear row's utility is the estimator's own accuracy on the clear utility faces; obscured faces
    # move it
    clear = res.info["attribute_estimator_accuracy"]
    assert (none["age_mae"], none["gender_acc"], none["race_acc"]) == (clear["age_mae"], clear["gender_acc"], clear["race_acc"])
    assert res.row("pixelate-25")["age_mae"] != none["age_mae"] and res.row("up-gan")["age_mae"] != none["age_mae"]
    paths = E.write_outputs(res, tmp_path)
    md = paths["md"].read_text()
    assert md.splitlines()[0].startswith("| Method | TM-I VGG-19 | TM-II VGG-19 | FID realism")
    assert "FID in-dist" in md.splitlines()[0] and "Real-vs-real floor at n=3" in md and "Not measured: k-same-net" in md
    assert len(paths["csv"].read_text().splitlines()) == 10
    assert paths["png"].stat().st_size > 1000
    assert (tmp_path / "attribute_estimator.safetensors").exists()
    assert any("held-out photos" in line for line in logs)


def test_progress_line_per_method_is_short_and_the_plot_keeps_the_backend():
    import matplotlib

    from upgan_lib import evaluate as E

    row = {"method": "blur15", "label": "Gaussian blur 15", "tm1_dlib": 0.8, "tm2_dlib": 0.884, "tm1_vgg": 0.5,
           "tm2_vgg": 0.61, "fid_realism": 151.4, "kid_realism": 0.0985, "fid_paired": 105.7, "kid_paired": 0.0475,
           "fid_utk": 108.0, "kid_utk": 0.062, "age_mae": 12.3, "gender_acc": 0.837, "race_acc": 0.66,
           "landmark_err": float("nan"), "landmark_failed": 72, "seconds": 12.0}
    line = E.summary_line(row)
    assert line.startswith("Gaussian blur 15") and "TM-II dlib 0.884" in line and len(line) < 110
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # stands for a notebook's inline backend
    try:
        rows = [row, {**row, "method": "none", "label": "None (clear)"}, {**row, "method": "b5", "label": "blur 5"}]
        fig = E.plot_privacy_utility(E.EvalResult(rows=rows, info={"sizes": {"chance": 0.1}}, examples={}))
        assert matplotlib.get_backend() == "svg"  # not switched: in a notebook the figure is shown
    finally:
        matplotlib.use(before)
    texts = [t for ax in fig.axes for t in ax.texts]
    offsets = {(round(t.xy[0], 3), round(t.xy[1], 3), t.xyann) for t in texts}
    assert len(offsets) == len(texts)  # labels of coinciding points are stacked, not drawn over each other


# ---------------------------------------------------------------------------- real data
@pytest.mark.real_data
def test_real_table1_rows_are_ordered_as_any_correct_evaluation_orders_them():
    """Table 1's code path (``setup_evaluation``, ``table_methods``, ``evaluate_method``) on 12 people
    of the shared identity set, 4 photos each (2 training, 2 held-out), dlib's attacker, FID on 8
    photos: orderings that hold for any correct implementation, whatever the sizes.

    Identification (threat model I): clear faces >= a 5x5 blur kernel (sigma 1 px barely changes a
    128 px face: ties are expected) > pixelation 25 (near chance); and strictly clear > blur with
    sigma = 5 px (the reading of chapter 09) > pixelation 25. Realism: pixelation 25 is further
    from real faces than blur 5, in both FID protocols; the paired FID of the clear row is zero.
    (Checked over 8 draws of photos: the smallest gaps were 2 of 24 held-out photos.)"""
    from conftest import real_archive

    from upgan_lib import pretrained
    from upgan_lib.attributes import load_attribute_estimator
    from upgan_lib.prepare import load_or_prepare

    torch.set_num_threads(1)
    ids = load_or_prepare("identities", real_archive("celeba-identities.tar.gz"), limit=300, workers=1,
                          progress=False, verbose=False)  # the first 12 people, whole
    utk = load_or_prepare("utkface", real_archive("UTKFace.tar.gz"), limit=24, workers=1, progress=False,
                          verbose=False)
    rng = np.random.default_rng(0)
    people = np.unique(ids.identity)[:12]
    ids = ids.subset(np.sort(np.concatenate([rng.choice(np.flatnonzero(ids.identity == p), 4, replace=False)
                                             for p in people])))
    cfg = replace(EvalConfig.for_preset("full"), attackers=("dlib",), test_fraction=0.5, fid_images=8, fid_real=8,
                  kid_subset=4, utility_images=4, landmark_error=False, seed=0)
    ctx = E.setup_evaluation(ids, utk, cfg, estimator=load_attribute_estimator(pretrained.attributes_path()),
                             log=lambda line: None)
    assert ctx.info["sizes"]["test_photos"] == 24 and ctx.info["sizes"]["identities"] == 12
    methods = {m.name: m for m in E.table_methods(ctx)}
    methods.update({m.name: m for m in E.table_methods(replace(ctx, cfg=replace(cfg, blur_by="sigma")))})
    rows = {name: E.evaluate_method(ctx, methods[name], 0)[0] for name in ("none", "blur-5", "blur-s5", "pixelate-25")}
    tm1 = {name: r["tm1_dlib"] for name, r in rows.items()}
    assert tm1["none"] >= tm1["blur-5"] > tm1["pixelate-25"], tm1
    assert tm1["none"] > tm1["blur-s5"] > tm1["pixelate-25"], tm1
    assert tm1["none"] >= 0.9, tm1  # dlib names nearly every clear held-out photo
    for fid in ("fid_realism", "fid_paired"):
        assert rows["pixelate-25"][fid] > rows["blur-5"][fid], (fid, rows["pixelate-25"][fid], rows["blur-5"][fid])
    assert abs(rows["none"]["fid_paired"]) < 1e-3 < rows["blur-5"]["fid_paired"]


def test_only_the_rows_asked_for_are_built():
    cfg = replace(E.EvalConfig.for_preset("smoke"), attackers=("dlib",), rows=("none", "pixelate-15"))
    ids, utk = E.smoke_data(cfg)
    res = E.evaluate(ids, utk, cfg, ksame_net="train", log=lambda *a: None)
    assert [r["method"] for r in res.rows] == ["none", "pixelate-15"]
    assert "ksame_net" not in res.info and "k-same-net" not in res.info["skipped"]
    with pytest.raises(E.EvaluationError, match="unknown rows"):
        E.evaluate(ids, utk, replace(cfg, rows=("blur-7",)), log=lambda *a: None)
