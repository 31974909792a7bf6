"""k-same-net: the generative k-anonymity baseline of the paper's Table 1 (Meden et al. 2018).

Meden et al.'s k-Same-Net groups people into clusters of at least k and lets a generative
network (Dosovitskiy's "chairs" generator, trained with a reconstruction loss) draw a
*surrogate* face for each cluster from the cluster's proxy identity and the non-identity
attributes to keep. Every person of a cluster is released as the same proxy identity, so a
released face stands for at least k people (k-anonymity), but unlike pixel-averaging k-same it
is a sharp, natural face. The UP-GAN paper adapts it to take the same inputs as UP-GAN.

Here (``k = 10`` as in Table 1):

1. **Clusters.** The training faces are grouped by :func:`upgan_lib.baselines.ksame_groups`
   (greedy k-Same, identity-aware: each cluster holds >= k distinct people, no person split;
   an unlabelled face, ``identity = -1`` as in UTKFace, is its own person) in the space of the
   three attributes of the utility vector (``group_by="attributes"``; ``"utility"`` uses all 17
   numbers). A cluster's *proxy identity* is a learnt embedding vector; its *centroid* is the
   mean grouping feature of its faces.
2. **Generator.** ``KSameNet(utility (N,17), cluster (N,)) -> (face, mask_logits)``: the UP-GAN
   generator's building blocks (``generator.UpBlock``, pixel norm, the two FC input streams,
   ``GeneratorConfig`` widths) with a third input stream, the cluster's embedding. Trained to
   reconstruct each training photo from its utility vector and *its cluster's* index, with
   ``5 * L2 + 1 * mask cross-entropy`` (+ optionally the perceptual loss through the face
   identifier). Since the k people of a cluster share the input, the network can only learn
   what they have in common given the utility: the cluster's face, posed and expressed by the
   landmarks.
3. **Release.** ``forward(utility)`` without a cluster picks the cluster whose centroid is
   nearest to the utility's grouping features (so the surrogate has similar attributes);
   :meth:`KSameNet.assign` can also exclude the clusters a given person belongs to, so a
   training person is never released as their own cluster. A face to obscure is therefore always
   a face of a proxy cluster of >= k people; with disjoint training and test people (UTKFace vs.
   the identity photos) it never contains the person at all.

What is left out of Meden et al.: their identity-mixing of proxy identities and the
expression/attribute classifiers; the utility vector replaces their non-identity attributes.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .amp import autocast, grad_scaler, resolve_amp
from .baselines import ksame_groups
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .faceset import FaceSet
from .generator import GeneratorConfig, PixelNorm, UpBlock
from .losses import PerceptualLoss, l2_loss, mask_loss
from .utility import N_ATTRIBUTES, N_POINTS, UTILITY_DIM

CHECKPOINT_KIND = "ksame_net"
CHECKPOINT_VERSION = 1
GROUP_BY = {"attributes": N_ATTRIBUTES, "utility": UTILITY_DIM}


@dataclass
class KSameNetConfig:
    """Knobs of k-same-net.

    k: people per cluster (at least). group_by: "attributes" (the 3 attribute numbers) or
    "utility" (all 17). generator: widths of the shared generator blocks (``GeneratorConfig``).
    Training: Adam (lr, betas), ``epochs`` over the set, ``l2_weight`` / ``mask_weight`` /
    ``perceptual_weight`` (the last only used when a perceptual loss is passed), mixed precision
    on CUDA.
    """

    k: int = 10
    group_by: str = "attributes"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    l2_weight: float = 5.0
    mask_weight: float = 1.0
    perceptual_weight: float = 1.0
    amp: bool = True
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.generator, dict):
            self.generator = GeneratorConfig(**self.generator)
        self.betas = tuple(float(b) for b in self.betas)
        if self.group_by not in GROUP_BY:
            raise ValueError(f"KSameNetConfig.group_by must be one of {sorted(GROUP_BY)}, got {self.group_by!r}")
        if self.k < 1:
            raise ValueError(f"KSameNetConfig.k must be at least 1, got {self.k}")

    @classmethod
    def for_preset(cls, name: str, **overrides) -> "KSameNetConfig":
        """``full``: k = 10 and the paper-sized generator; ``smoke``: k = 3, the smoke generator's widths, 2 epochs."""
        if name == "full":
            cfg = cls()
        elif name == "smoke":
            cfg = cls(k=3, generator=GeneratorConfig.for_preset("smoke"), epochs=2, batch_size=16, lr=1e-3)
        else:
            raise ValueError(f"unknown preset {name!r}: use 'smoke' or 'full'")
        return replace(cfg, **overrides)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["generator"] = self.generator.as_dict()
        d["betas"] = list(self.betas)
        return d


def person_ids(identity) -> np.ndarray:
    """Identity labels with every unlabelled face (-1) made its own person ``-(index + 1)``."""
    ident = np.asarray(identity).astype(np.int64).copy()
    unknown = np.flatnonzero(ident < 0)
    ident[unknown] = -(unknown + 1)
    return ident


def grouping_features(utility, group_by: str = "attributes"):
    """The part of (N, 17) utility vectors clusters are formed and chosen in (numpy or torch)."""
    return utility[:, :GROUP_BY[group_by]]


def _mlp(sizes: list[int], leak: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.LeakyReLU(leak)]
    return nn.Sequential(*layers)


class KSameNet(nn.Module):
    """Generator of cluster (proxy-identity) faces; ``forward(utility, cluster=None) -> (face, mask_logits)``.

    ``centroids`` (C, F): mean grouping features per cluster; ``cluster_people`` (C,): distinct
    people per cluster (all >= k); ``members``: person ids per cluster (see :func:`person_ids`).
    """

    def __init__(self, cfg: KSameNetConfig, centroids, members: list[list[int]]):
        super().__init__()
        self.cfg = cfg
        g = cfg.generator
        centroids = torch.as_tensor(np.asarray(centroids, np.float32))
        if centroids.ndim != 2 or centroids.shape[1] != GROUP_BY[cfg.group_by] or len(centroids) != len(members):
            raise ValueError(f"centroids must be (clusters, {GROUP_BY[cfg.group_by]}) with one row per member list, "
                             f"got {tuple(centroids.shape)} for {len(members)} clusters")
        self.members = [[int(p) for p in m] for m in members]
        self.num_clusters = len(self.members)
        self.register_buffer("centroids", centroids)
        self.register_buffer("cluster_people", torch.tensor([len(set(m)) for m in self.members], dtype=torch.long))
        self._person_cluster = {p: c for c, m in enumerate(self.members) for p in m}
        fs, fj = g.scaled(g.fc_stream), g.scaled(g.fc_joint)
        ch = [g.scaled(c) for c in g.channels]
        self.attributes = _mlp([N_ATTRIBUTES, fs, fs], g.leak)
        self.landmarks = _mlp([2 * N_POINTS, fs, fs], g.leak)
        self.proxy = nn.Embedding(self.num_clusters, fs)  # the clusters' proxy identities
        self.joint = _mlp([3 * fs, fj, fj], g.leak)
        self.to_map = nn.Linear(fj, ch[0] * g.start_size ** 2)
        self.map_act = nn.LeakyReLU(g.leak)
        self.map_norm = PixelNorm() if g.norm == "pixel" else nn.Identity()
        self.blocks = nn.ModuleList(UpBlock(a, b, g) for a, b in zip(ch[:-1], ch[1:]))
        self.pool = nn.MaxPool2d(3, stride=1, padding=1) if g.maxpool else nn.Identity()
        self.face_head = nn.Conv2d(ch[-1], 3, 3, padding=1)
        self.mask_head = nn.Conv2d(ch[-1], 2, 3, padding=1)
        self.channels = ch
        self.history: dict | None = None
        self._reset_parameters()

    def _reset_parameters(self) -> None:  # as generator.Generator
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, a=self.cfg.generator.leak, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.proxy.weight, std=1.0)
        for head in (self.face_head, self.mask_head):
            nn.init.normal_(head.weight, std=0.5 / math.sqrt(head.weight[0].numel()))

    # ------------------------------------------------------------------ proxies
    def assign(self, utility: torch.Tensor, exclude_people=None) -> torch.Tensor:
        """Proxy cluster per face: nearest centroid in grouping space, deterministic.

        ``exclude_people`` (N,) optional person ids (see :func:`person_ids`): a face never gets a
        cluster its own person belongs to (people not seen in training exclude nothing).
        """
        feats = grouping_features(utility, self.cfg.group_by).to(self.centroids)
        d = torch.cdist(feats, self.centroids)
        if exclude_people is not None:
            exclude_people = np.asarray(exclude_people).reshape(-1)
            if len(exclude_people) != len(utility):
                raise ValueError(f"{len(exclude_people)} person ids for {len(utility)} utility vectors")
            if self.num_clusters < 2:
                raise ValueError("cannot exclude a person's own cluster: this k-same-net has a single cluster")
            for i, p in enumerate(exclude_people):
                c = self._person_cluster.get(int(p))
                if c is not None:
                    d[i, c] = float("inf")
        return d.argmin(dim=1)

    def forward(self, utility: torch.Tensor, cluster: torch.Tensor | None = None):
        if utility.ndim != 2 or utility.shape[1] != UTILITY_DIM:
            raise ValueError(f"KSameNet expects utility vectors (N, {UTILITY_DIM}), got {tuple(utility.shape)}")
        if cluster is None:
            cluster = self.assign(utility)
        cluster = torch.as_tensor(cluster, device=utility.device).long().reshape(-1)
        if len(cluster) != len(utility):
            raise ValueError(f"{len(cluster)} clusters for {len(utility)} utility vectors")
        u = utility.to(self.to_map.weight.dtype)
        h = torch.cat([self.attributes(u[:, :N_ATTRIBUTES]), self.landmarks(u[:, N_ATTRIBUTES:]),
                       self.proxy(cluster).to(u.dtype)], dim=1)
        h = self.joint(h)
        s = self.cfg.generator.start_size
        x = self.map_norm(self.map_act(self.to_map(h)).view(len(h), self.channels[0], s, s))
        for block in self.blocks:
            x = block(x)
        x = self.pool(x)
        return torch.tanh(self.face_head(x)), self.mask_head(x)


# ---------------------------------------------------------------------------- clusters
def build_clusters(data: FaceSet, k: int, group_by: str = "attributes"):
    """Cluster the faces of ``data``: returns (cluster per face (N,), centroids (C, F), members).

    Raises ``ValueError`` when the set has fewer than ``k`` people.
    """
    feats = grouping_features(data.utility(), group_by).astype(np.float64)
    people = person_ids(data.identity)
    group = ksame_groups(feats, people, k)  # negative ids (unlabelled faces) are each their own person there too
    n_clusters = int(group.max()) + 1
    centroids = np.stack([feats[group == c].mean(axis=0) for c in range(n_clusters)]).astype(np.float32)
    members = [sorted({int(p) for p in people[group == c]}) for c in range(n_clusters)]
    return group, centroids, members


# ---------------------------------------------------------------------------- training
def train_ksame_net(data: FaceSet, cfg: KSameNetConfig | None = None, device="cpu",
                    perceptual: PerceptualLoss | None = None, progress: bool = True) -> tuple[KSameNet, dict]:
    """Cluster ``data`` and train a :class:`KSameNet` on it; returns ``(model, history)`` (eval mode).

    ``history``: per-epoch ``loss``, ``l2``, ``mask`` (and ``perceptual``) means, ``clusters``,
    ``min_people`` (smallest cluster, >= k), ``seconds``.
    """
    cfg = cfg or KSameNetConfig.for_preset("smoke")
    device = torch.device(device)
    group, centroids, members = build_clusters(data, cfg.k, cfg.group_by)
    torch.manual_seed(cfg.seed)
    model = KSameNet(cfg, centroids, members).to(device)
    util = torch.from_numpy(data.utility())
    faces = torch.from_numpy(np.ascontiguousarray(data.faces, dtype=np.uint8))
    masks = torch.from_numpy(np.ascontiguousarray(data.masks, dtype=np.uint8))
    clusters = torch.from_numpy(group).long()
    if device.type == "cuda":
        util, faces, masks, clusters = (t.to(device) for t in (util, faces, masks, clusters))
    n = len(data)
    bs = min(cfg.batch_size, n)
    steps = max(1, n // bs)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas)
    amp_dtype = resolve_amp(cfg.amp, device)
    scaler = grad_scaler(device, amp_dtype)
    gen = torch.Generator().manual_seed(cfg.seed)
    names = ["l2", "mask"] + (["perceptual"] if perceptual is not None else [])
    history: dict = {"epoch": [], "loss": [], **{k: [] for k in names}, "clusters": model.num_clusters,
                     "min_people": int(model.cluster_people.min()), "seconds": 0.0}
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc="k-same-net", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        perm = torch.randperm(n, generator=gen)
        sums = torch.zeros(len(names) + 1, device=device)
        for step in range(steps):
            idx = perm[step * bs:(step + 1) * bs].to(faces.device)
            real = faces[idx].to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
            real_mask = masks[idx].to(device).unsqueeze(1).float()
            with autocast(device, amp_dtype):
                fake, mask_logits = model(util[idx].to(device), clusters[idx].to(device))
                parts = [l2_loss(fake, real), mask_loss(mask_logits, real_mask)]
                if perceptual is not None:
                    parts.append(perceptual(fake, real))
            weights = [cfg.l2_weight, cfg.mask_weight, cfg.perceptual_weight][:len(parts)]
            loss = sum(w * p for w, p in zip(weights, parts))
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sums += torch.stack([loss.detach().float()] + [p.detach().float() for p in parts])
        means = (sums / steps).tolist()
        history["epoch"].append(epoch + 1)
        history["loss"].append(means[0])
        for name, v in zip(names, means[1:]):
            history[name].append(v)
        bar.set_postfix(loss=f"{means[0]:.3f}")
    history["seconds"] = time.perf_counter() - t0
    model.history = history
    return model.eval(), history


# ---------------------------------------------------------------------------- save / load
def save_ksame_net(model: KSameNet, path, history: dict | None = None) -> Path:
    """Weights + config + clusters (centroids in the weights, member lists in the meta)."""
    meta = {"kind": CHECKPOINT_KIND, "version": CHECKPOINT_VERSION, "config": model.cfg.as_dict(),
            "members": model.members}
    if history is not None or model.history is not None:
        meta["history"] = history if history is not None else model.history
    return save_checkpoint(path, {"model": model.state_dict()}, meta)


def load_ksame_net(path, map_location="cpu") -> KSameNet:
    """Rebuild a :class:`KSameNet` saved by :func:`save_ksame_net` (eval mode); ``CheckpointError``
    naming the file when it is missing, corrupt, of another kind, or does not fit its config."""
    states, meta = load_checkpoint(path, map_location=map_location)
    if meta.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path}: this is a {meta.get('kind')!r} checkpoint, not a k-same-net ({CHECKPOINT_KIND!r})")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: k-same-net checkpoint version {meta.get('version')}, expected {CHECKPOINT_VERSION}")
    try:
        d = dict(meta["config"])
        known = {f.name for f in fields(KSameNetConfig)}
        extra = sorted(set(d) - known)
        if extra:
            raise ValueError(f"unknown settings {extra}")
        cfg = KSameNetConfig(**d)
        state = states["model"]
        model = KSameNet(cfg, state["centroids"].cpu().numpy(), meta["members"])
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: k-same-net checkpoint does not match its saved configuration: {e}") from e
    model.history = meta.get("history")
    return model.to(map_location).eval()


# ---------------------------------------------------------------------------- the course's copy
def default_ksame_net_path(preset: str, cache=None) -> Path:
    """Where chapter 08 saves its k-same-net of ``preset`` and chapter 09 looks for it:
    ``<cache>/models/ksame_net_<preset>.safetensors``."""
    from .config import cache_dir

    return cache_dir(cache, create=False) / "models" / f"ksame_net_{preset}.safetensors"


def load_or_train_ksame_net(path, data: FaceSet, cfg: KSameNetConfig, device="cpu", progress: bool = False,
                            say=print) -> tuple[KSameNet, str]:
    """The k-same-net saved at ``path`` if there is one with ``cfg``'s ``k`` and ``group_by`` (the
    anonymity it guarantees); otherwise one trained on ``data`` with ``cfg`` and saved at ``path``.
    Returns ``(model, how)``, ``how`` saying which (and why it was trained)."""
    path = Path(path)
    why = "none saved yet"
    if path.exists():
        try:
            model = load_ksame_net(path, map_location=device)
        except CheckpointError as e:
            why = f"the saved one is unreadable ({e})"
        else:
            if (model.cfg.k, model.cfg.group_by) == (cfg.k, cfg.group_by):
                return model, f"loaded {path} (k={model.cfg.k}, {model.num_clusters} clusters)"
            why = f"the saved one has k={model.cfg.k}, group_by={model.cfg.group_by!r}"
    say(f"k-same-net: training (k={cfg.k}, {cfg.epochs} epochs on {len(data)} faces): {why}")
    model, history = train_ksame_net(data, cfg, device, progress=progress)
    save_ksame_net(model, path, history)
    return model, f"trained on {len(data)} faces ({why}), saved to {path}"
