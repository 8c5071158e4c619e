"""The classifier head: a small MLP on top of the backbone embedding."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping

import torch
from torch import nn

from .config import BundleConfig
from .errors import ModelLoadError
from .registry import natural_key, strip_wrapper_prefixes

logger = logging.getLogger("penguin12.model")

_HEAD_PREFIXES: tuple[str, ...] = ("head.", "classifier.", "fc.", "mlp.", "layers.")


def build_head(config: BundleConfig) -> nn.Sequential:
    """``Linear(embedding_dim -> hidden...) -> Linear(-> num_outputs)`` with ReLU (or SiLU) between.

    One output is a logit for P(positive_label) (sigmoid); two outputs are logits in the
    order of ``config.labels`` (softmax). Dropout is omitted: it is a no-op at inference.
    """
    dims = (config.embedding_dim, *config.head_hidden_dims)
    activation = {"relu": nn.ReLU, "silu": nn.SiLU}[config.head_activation]
    layers: list[nn.Module] = []
    for d_in, d_out in itertools.pairwise(dims):
        layers += [nn.Linear(d_in, d_out), activation(inplace=True)]
    layers.append(nn.Linear(dims[-1], config.num_outputs))
    return nn.Sequential(*layers)


def _linear_pairs(sd: Mapping[str, torch.Tensor]) -> list[tuple[str, str]] | None:
    """(weight_key, bias_key) per Linear layer in module order, or None if not a pure MLP."""
    weights = sorted((k for k in sd if k.endswith("weight")), key=natural_key)
    pairs: list[tuple[str, str]] = []
    for w in weights:
        b = w[: -len("weight")] + "bias"
        if sd[w].ndim != 2 or b not in sd or sd[b].shape != (sd[w].shape[0],):
            return None
        pairs.append((w, b))
    if len(pairs) * 2 != len(sd):
        return None
    return pairs


def infer_head_layout(state_dict: Mapping[str, torch.Tensor]) -> tuple[int, tuple[int, ...], int]:
    """(embedding_dim, hidden_dims, num_outputs) of an MLP head, for bundles without config."""
    sd = strip_wrapper_prefixes(state_dict, (*_HEAD_PREFIXES, "module.", "model."))
    pairs = _linear_pairs(sd)
    if not pairs:
        raise ModelLoadError(
            "cannot infer the classifier head layout: expected only Linear weight/bias pairs, "
            f"got keys {sorted(sd, key=natural_key)[:8]}. Add a config.json describing the head."
        )
    shapes = [tuple(sd[w].shape) for w, _ in pairs]
    for (out_prev, _), (_, in_next) in itertools.pairwise(shapes):
        if out_prev != in_next:
            raise ModelLoadError(f"classifier head Linear layers do not chain: {shapes}")
    return shapes[0][1], tuple(s[0] for s in shapes[:-1]), shapes[-1][0]


def align_head_state_dict(
    state_dict: Mapping[str, torch.Tensor], head: nn.Module
) -> dict[str, torch.Tensor]:
    """Rename an MLP head's keys onto ``head``'s when only the naming differs.

    A head saved as e.g. ``nn.Sequential(Dropout, Linear)`` has keys ``1.weight``; ours is
    ``0.weight``. The rename is applied only when both are pure Linear stacks with identical
    shapes in the same order, and it is logged; anything else is returned unchanged so the
    strict load reports it.
    """
    expected = head.state_dict()
    sd = strip_wrapper_prefixes(state_dict, (*_HEAD_PREFIXES, "module.", "model."))
    if set(sd) == set(expected):
        return sd
    ours, theirs = _linear_pairs(expected), _linear_pairs(sd)
    if ours is None or theirs is None or len(ours) != len(theirs):
        return dict(state_dict)
    if any(
        sd[tw].shape != expected[ow].shape for (tw, _), (ow, _) in zip(theirs, ours, strict=True)
    ):
        return dict(state_dict)
    renamed: dict[str, torch.Tensor] = {}
    for (tw, tb), (ow, ob) in zip(theirs, ours, strict=True):
        renamed[ow], renamed[ob] = sd[tw], sd[tb]
    logger.info(
        "classifier head keys renamed by layer order: %s",
        ", ".join(f"{t}->{o}" for (t, _), (o, _) in zip(theirs, ours, strict=True)),
    )
    return renamed
