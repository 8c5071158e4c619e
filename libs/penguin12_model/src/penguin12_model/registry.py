"""Backbone registry: name -> feature extractor producing a pooled embedding.

All builders use ``weights=None`` so nothing is ever downloaded; the weights always come
from the bundle. Every backbone maps ``float[N, 3, H, W] -> float[N, embedding_dim]``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import ModelLoadError

logger = logging.getLogger("penguin12.model")

#: Wrapper prefixes added by DataParallel, torch.compile or a parent module. They are
#: stripped only when *every* key carries them, so real submodule names are never touched.
WRAPPER_PREFIXES: tuple[str, ...] = (
    "module.",
    "_orig_mod.",
    "backbone.",
    "model.",
    "encoder.",
    "net.",
)

_NBT_SUFFIX = "num_batches_tracked"


@dataclass(frozen=True)
class BackboneSpec:
    """A registry entry.

    ``head_prefixes`` are the keys of the classification layer the backbone drops (e.g.
    torchvision's ``fc``); a full torchvision state dict can then still be recognised.
    """

    name: str
    embedding_dim: int
    factory: Callable[[], nn.Module] = field(repr=False)
    head_prefixes: tuple[str, ...] = ()


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> None:
    """Add or replace a registry entry (lets deployments plug in their own backbone)."""
    _REGISTRY[spec.name] = spec
    _signature.cache_clear()


def available_architectures() -> list[str]:
    """Names accepted by :func:`build_backbone`."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> BackboneSpec:
    """Look up a registry entry with an error that lists the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelLoadError(
            f"unknown backbone architecture {name!r}; known: {', '.join(available_architectures())}"
        ) from None


def build_backbone(name: str) -> nn.Module:
    """Build a randomly initialised backbone (no download); load weights separately."""
    return get_spec(name).factory()


# --------------------------------------------------------------------------- builders


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class TinyBackbone(nn.Module):
    """A 4-layer CNN: fast enough for tests and CI, same interface as the real backbones."""

    def __init__(self, embedding_dim: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(3, 16),
            _conv_bn_relu(16, 32),
            _conv_bn_relu(32, 64),
            _conv_bn_relu(64, embedding_dim),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


class SqueezeExcite(nn.Module):
    """Channel gating: global average -> Linear(c, c/16) -> ReLU -> Linear -> Sigmoid -> scale."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(x.mean(dim=(2, 3)))
        return x * weights[:, :, None, None]


def _penguin12_block(cin: int, cout: int, squeeze_excite: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel_size=3, padding=1),
        nn.BatchNorm2d(cout),
        nn.SiLU(inplace=True),
        nn.Conv2d(cout, cout, kernel_size=3, padding=1),
        nn.BatchNorm2d(cout),
        nn.SiLU(inplace=True),
    ]
    if squeeze_excite:
        layers.append(SqueezeExcite(cout))
    layers += [nn.MaxPool2d(2), nn.Dropout(0.25)]
    return nn.Sequential(*layers)


class Penguin12Backbone(nn.Sequential):
    """Penguin-12's own CNN, as its published files are laid out.

    The module *is* the ``features`` sequence (five conv blocks, 3->32->64->128->256->512, SE in
    blocks 2-5), so ``backbone_weights.pt`` keys (``0.0.weight``, ``1.6.fc.0.weight``) load as
    they are. A 128x128 input leaves a 4x4x512 map; its global average and global max pools,
    concatenated in that order, are the 1024-float embedding.
    """

    def __init__(self) -> None:
        channels = (3, 32, 64, 128, 256, 512)
        super().__init__(
            *(
                _penguin12_block(cin, cout, squeeze_excite=i > 0)
                for i, (cin, cout) in enumerate(itertools.pairwise(channels))
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self:
            x = block(x)
        return torch.cat((x.mean(dim=(2, 3)), x.amax(dim=(2, 3))), dim=1)


def _torchvision(variant: str, head: str) -> Callable[[], nn.Module]:
    """A torchvision model whose classification layer ``head`` (``classifier``, ``fc``) is a no-op.

    The attribute is kept (so child indices stay the same) but made an identity: forward() then
    returns the pooled features, flatten(avgpool(features(x))).
    """

    def build() -> nn.Module:
        import torchvision.models as tvm

        model: nn.Module = getattr(tvm, variant)(weights=None)
        setattr(model, head, nn.Identity())
        return model

    return build


# ------------------------------------------------------------------ state-dict matching


def strip_wrapper_prefixes(
    state_dict: Mapping[str, torch.Tensor], prefixes: tuple[str, ...] = WRAPPER_PREFIXES
) -> dict[str, torch.Tensor]:
    """Remove prefixes shared by every key (``module.``, ``backbone.``, ...), repeatedly."""
    sd = dict(state_dict)
    changed = True
    while sd and changed:
        changed = False
        for prefix in prefixes:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                changed = True
    return sd


@functools.cache
def _signature(name: str) -> tuple[tuple[tuple[str, tuple[int, ...]], ...], tuple[str, ...]]:
    """(key, shape) pairs and top-level child names of a backbone, built on the meta device."""
    with torch.device("meta"):
        model = build_backbone(name)
    keys = tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())
    children = tuple(n for n, _ in model.named_children())
    return keys, children


def expected_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the state dict a backbone expects (cheap: meta device, cached)."""
    return dict(_signature(name)[0])


def canonicalize_backbone_state_dict(
    state_dict: Mapping[str, torch.Tensor], architecture: str, *, log: bool = True
) -> dict[str, torch.Tensor]:
    """Map common export variants onto the registry's key names, explicitly and visibly.

    Handles: wrapper prefixes; ``nn.Sequential(*children[:-1])`` exports whose keys start
    with child indices (``0.``, ``4.1.conv1``...); the dropped classification layer of a
    full torchvision state dict (logged at WARNING); missing BatchNorm
    ``num_batches_tracked`` buffers (counters unused in eval). Nothing else is altered,
    so real mismatches still fail the strict load.
    """
    spec = get_spec(architecture)
    expected = expected_shapes(architecture)
    children = _signature(architecture)[1]
    sd = strip_wrapper_prefixes(state_dict)

    first = {k.split(".", 1)[0] for k in sd}
    alias = {str(i): name for i, name in enumerate(children)}
    if sd and first <= set(alias) and all("." in k for k in sd):
        sd = {alias[k.split(".", 1)[0]] + "." + k.split(".", 1)[1]: v for k, v in sd.items()}
        if log:
            logger.info(
                "backbone state dict uses nn.Sequential child indices; renamed to %s names",
                architecture,
            )

    dropped = [k for k in sd if k.startswith(spec.head_prefixes) and k not in expected]
    if dropped:
        if log:
            logger.warning(
                "ignoring %d classification-layer key(s) in the backbone weights (%s): "
                "the %s backbone only produces pooled features",
                len(dropped),
                ", ".join(dropped[:4]),
                architecture,
            )
        sd = {k: v for k, v in sd.items() if k not in dropped}

    for key in expected:
        if key.endswith(_NBT_SUFFIX) and key not in sd:
            sd[key] = torch.zeros((), dtype=torch.long)
    return sd


def infer_architecture(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Return the registry entry whose keys and shapes match ``state_dict`` exactly.

    Used for bundles without a config.json (e.g. the raw Hub files). Raises
    :class:`ModelLoadError` naming the closest candidate when nothing matches.
    """
    if not state_dict:
        raise ModelLoadError("cannot infer the architecture of an empty state dict")
    best: tuple[float, str, str] = (-1.0, "", "")
    for name in available_architectures():
        expected = expected_shapes(name)
        sd = canonicalize_backbone_state_dict(state_dict, name, log=False)
        got = {k: tuple(v.shape) for k, v in sd.items()}
        if got == expected:
            logger.info("inferred backbone architecture %r from state dict keys", name)
            return name
        common = set(got) & set(expected)
        same_shape = sum(1 for k in common if got[k] == expected[k])
        score = same_shape / max(len(got), len(expected))
        if score > best[0]:
            detail = (
                f"{len(set(expected) - set(got))} missing, {len(set(got) - set(expected))} "
                f"unexpected, {len(common) - same_shape} shape mismatches"
            )
            best = (score, name, detail)
    sample = ", ".join(sorted(strip_wrapper_prefixes(state_dict), key=natural_key)[:5])
    raise ModelLoadError(
        "could not match the backbone state dict to any registered architecture "
        f"({', '.join(available_architectures())}). Closest: {best[1]!r} "
        f"({best[0]:.0%} of keys match; {best[2]}). First keys: {sample}. "
        "Add a config.json with an explicit 'architecture' or register the backbone."
    )


def natural_key(key: str) -> tuple[tuple[int, int, str], ...]:
    """Sort ``2.weight`` before ``10.weight`` (safetensors files store keys alphabetically)."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", key)
    )


# ---------------------------------------------------------------------------- entries

register_backbone(BackboneSpec("tiny", 64, TinyBackbone))
register_backbone(BackboneSpec("penguin12", 1024, Penguin12Backbone))
for _variant, _dim in {
    "efficientnet_b0": 1280,
    "efficientnet_b1": 1280,
    "efficientnet_b2": 1408,
    "efficientnet_b3": 1536,
    "efficientnet_b4": 1792,
    "efficientnet_b5": 2048,
    "efficientnet_b6": 2304,
    "efficientnet_b7": 2560,
}.items():
    register_backbone(
        BackboneSpec(_variant, _dim, _torchvision(_variant, "classifier"), ("classifier.",))
    )
for _variant, _dim in {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
}.items():
    register_backbone(BackboneSpec(_variant, _dim, _torchvision(_variant, "fc"), ("fc.",)))
