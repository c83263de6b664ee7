"""SparK's "sparse" CNN layers on dense tensors, with the mask passed explicitly.

A CNN sees a masked image as a dense tensor with holes; SparK (Tian et al., ICLR 2023) keeps the
holes from leaking by (1) running each conv/pool densely and multiplying by the keep-mask at that
resolution, and (2) normalising with statistics of visible positions only (gather -> normalise ->
scatter). Unlike the reference code there is no global "current mask": every sparse layer takes
``forward(x, active=None)`` and :class:`SparseEncoder` threads ``active`` through the network by
rewriting its torch.fx graph. With ``active=None`` every layer is its dense self, so a trained
network runs without a mask, and parameter names never change (export = ``state_dict``).

``active`` is ``[B, *grid]`` bool, True = visible, on the coarsest grid; a layer upsamples it by
repetition to its own feature size, which must therefore be a multiple of the grid.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def active_at(active: Tensor, spatial: Sequence[int]) -> Tensor:
    """``[B, *grid]`` bool -> ``[B, *spatial]`` bool by nearest (block) upsampling."""
    grid, spatial = tuple(active.shape[1:]), tuple(int(s) for s in spatial)
    if len(grid) != len(spatial):
        raise ValueError(f"mask grid {grid} has {len(grid)} dims but the feature map {spatial} has {len(spatial)}")
    out = active
    for axis, (g, s) in enumerate(zip(grid, spatial)):
        if s % g:
            raise ValueError(f"feature map {spatial} is not a multiple of the mask grid {grid}: the input size "
                             "must be divisible by the backbone's total stride (32 for timm CNNs)")
        if s != g:
            out = out.repeat_interleave(s // g, dim=axis + 1)
    return out


def _keep(active: Tensor, x: Tensor) -> Tensor:
    """Keep-mask as a ``[B, 1, *S]`` float multiplier for channel-first ``x``."""
    return active_at(active, x.shape[2:]).unsqueeze(1).to(x.dtype)


class _SparseMixin:
    """Marks sparse layers (fx leaves) and names their dense parent for :func:`densify`."""

    dense_cls: type[nn.Module]


def _masked_dense(cls: type[nn.Module]) -> type[nn.Module]:
    """A conv/pool whose input and output are multiplied by the keep-mask at their resolutions.

    Masking the input too (SparK masks only outputs) makes visible outputs independent of whatever
    sits in masked positions, e.g. residual-branch biases in ConvNeXt blocks.
    """

    def forward(self, x: Tensor, active: Tensor | None = None) -> Tensor:
        if active is None:
            return cls.forward(self, x)
        y = cls.forward(self, x * _keep(active, x))
        return y * _keep(active, y)

    name = "Sparse" + cls.__name__
    return type(name, (cls, _SparseMixin), {"forward": forward, "dense_cls": cls, "__module__": __name__,
                                             "__doc__": f"{cls.__name__} run densely, masked in and out."})


SparseConv1d = _masked_dense(nn.Conv1d)
SparseConv2d = _masked_dense(nn.Conv2d)
SparseConv3d = _masked_dense(nn.Conv3d)
SparseMaxPool2d = _masked_dense(nn.MaxPool2d)
SparseMaxPool3d = _masked_dense(nn.MaxPool3d)
SparseAvgPool2d = _masked_dense(nn.AvgPool2d)
SparseAvgPool3d = _masked_dense(nn.AvgPool3d)


def _gather_norm_scatter(x_last: Tensor, keep: Tensor, norm) -> Tensor:
    """Apply ``norm`` ([N, C] -> [N, C]) to visible rows of channels-last ``x``; masked rows become 0."""
    out = torch.zeros_like(x_last)
    out[keep] = norm(x_last[keep])
    return out


class _SparseBatchNorm(_SparseMixin):
    """BatchNorm whose batch statistics (and running averages) come from visible positions only."""

    def _bn_rows(self, rows: Tensor) -> Tensor:
        # nn.modules.batchnorm._BatchNorm.forward, applied to [N, C] rows of visible positions
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return F.batch_norm(rows, self.running_mean if track else None, self.running_var if track else None,
                            self.weight, self.bias, use_batch, factor, self.eps)

    def forward(self, x: Tensor, active: Tensor | None = None) -> Tensor:
        if active is None:
            return self.dense_cls.forward(self, x)
        keep = active_at(active, x.shape[2:])
        return _gather_norm_scatter(x.movedim(1, -1), keep, self._bn_rows).movedim(-1, 1)


class SparseBatchNorm1d(_SparseBatchNorm, nn.BatchNorm1d):
    dense_cls = nn.BatchNorm1d


class SparseBatchNorm2d(_SparseBatchNorm, nn.BatchNorm2d):
    dense_cls = nn.BatchNorm2d


class SparseBatchNorm3d(_SparseBatchNorm, nn.BatchNorm3d):
    dense_cls = nn.BatchNorm3d


class SparseLayerNorm(nn.LayerNorm, _SparseMixin):
    """Channels-last LayerNorm (``[B, *S, C]``, ConvNeXt blocks): visible positions normalised, masked = 0."""

    dense_cls = nn.LayerNorm

    def forward(self, x: Tensor, active: Tensor | None = None) -> Tensor:
        if active is None:
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        keep = active_at(active, x.shape[1:-1])
        return _gather_norm_scatter(
            x, keep, lambda r: F.layer_norm(r, self.normalized_shape, self.weight, self.bias, self.eps))


class SparseLayerNorm2d(nn.LayerNorm, _SparseMixin):
    """Channels-first LayerNorm (timm ``LayerNorm2d``/``LayerNorm3d``) on visible positions only."""

    dense_cls = nn.LayerNorm

    def forward(self, x: Tensor, active: Tensor | None = None) -> Tensor:
        x_last = x.movedim(1, -1)
        if active is None:
            return F.layer_norm(x_last, self.normalized_shape, self.weight, self.bias, self.eps).movedim(-1, 1)
        keep = active_at(active, x.shape[2:])
        ln = lambda r: F.layer_norm(r, self.normalized_shape, self.weight, self.bias, self.eps)  # noqa: E731
        return _gather_norm_scatter(x_last, keep, ln).movedim(-1, 1)


class _SparseInstanceNorm(_SparseMixin):
    """InstanceNorm with per-sample, per-channel moments over visible positions only (masked = 0).

    Masked moments ``sum(x * m) / sum(m)`` equal gather -> normalise -> scatter per sample.
    """

    def forward(self, x: Tensor, active: Tensor | None = None) -> Tensor:
        if active is None:
            return self.dense_cls.forward(self, x)
        m = _keep(active, x)
        dims = tuple(range(2, x.dim()))
        count = m.sum(dim=dims, keepdim=True).clamp_min(1.0)
        mean = (x * m).sum(dim=dims, keepdim=True) / count
        var = (((x - mean) * m) ** 2).sum(dim=dims, keepdim=True) / count
        y = (x - mean) / torch.sqrt(var + self.eps)
        if self.affine:
            shape = (1, -1) + (1,) * len(dims)
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        return y * m


class SparseInstanceNorm2d(_SparseInstanceNorm, nn.InstanceNorm2d):
    dense_cls = nn.InstanceNorm2d


class SparseInstanceNorm3d(_SparseInstanceNorm, nn.InstanceNorm3d):
    dense_cls = nn.InstanceNorm3d


def _timm_layernorm_classes() -> tuple[dict[type, type], dict[type, type]]:
    channels_last: dict[type, type] = {}
    channels_first: dict[type, type] = {}
    try:
        from timm.layers import norm as timm_norm
    except ImportError:  # timm is optional for 3-D models
        return channels_last, channels_first
    if hasattr(timm_norm, "LayerNorm"):
        channels_last[timm_norm.LayerNorm] = SparseLayerNorm
    for name in ("LayerNorm2d", "LayerNorm3d"):
        if hasattr(timm_norm, name):
            channels_first[getattr(timm_norm, name)] = SparseLayerNorm2d
    return channels_last, channels_first


_SPARSE: dict[type, type] = {
    nn.Conv1d: SparseConv1d, nn.Conv2d: SparseConv2d, nn.Conv3d: SparseConv3d,
    nn.MaxPool2d: SparseMaxPool2d, nn.MaxPool3d: SparseMaxPool3d,
    nn.AvgPool2d: SparseAvgPool2d, nn.AvgPool3d: SparseAvgPool3d,
    nn.BatchNorm1d: SparseBatchNorm1d, nn.BatchNorm2d: SparseBatchNorm2d, nn.BatchNorm3d: SparseBatchNorm3d,
    nn.InstanceNorm2d: SparseInstanceNorm2d, nn.InstanceNorm3d: SparseInstanceNorm3d,
    nn.LayerNorm: SparseLayerNorm,
}
# spatial layers that must not be left dense: they would mix masked and visible positions
_UNSUPPORTED = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LocalResponseNorm)

SPARSE_LAYERS: tuple[type, ...] = tuple(set(_SPARSE.values()))


def sparsify(model: nn.Module) -> nn.Module:
    """Turn conv/pool/norm layers of ``model`` into their sparse versions, in place (class swap).

    Parameters and buffers are untouched, so ``state_dict`` keys and values stay those of the dense
    model. Raises ``TypeError`` on spatial layers without a sparse version (GroupNorm, padded
    ``Conv2dSame``, ...) rather than silently letting masked pixels leak.
    """
    last, first = _timm_layernorm_classes()
    table = {**_SPARSE, **last, **first}
    for name, module in model.named_modules():
        cls = type(module)
        if isinstance(module, _SparseMixin):
            continue
        if cls in table:
            if isinstance(module, nn.modules.instancenorm._InstanceNorm) and module.track_running_stats:
                raise TypeError(f"{name}: InstanceNorm with track_running_stats=True has no sparse version")
            module.__dict__["_dense_class"] = cls  # e.g. timm's LayerNorm2d, restored by densify
            module.__class__ = table[cls]
        elif isinstance(module, _UNSUPPORTED):
            raise TypeError(f"{name}: no sparse version of {cls.__module__}.{cls.__name__}; SparK supports "
                            f"{sorted(c.__name__ for c in table)} (swap the layer or extend sparse._SPARSE)")
    return model


def densify(model: nn.Module) -> nn.Module:
    """Undo :func:`sparsify` in place (sparse layers back to their original dense classes)."""
    for module in model.modules():
        if isinstance(module, _SparseMixin):
            module.__class__ = module.__dict__.pop("_dense_class", module.dense_cls)
    return model


class SparseEncoder(nn.Module):
    """A dense CNN made sparse: ``forward(x, active=None)`` -> feature maps of ``feature_modules``.

    The backbone is deep-copied, :func:`sparsify`-ed and traced with torch.fx (torchvision's
    feature extractor, sparse layers as leaves); every sparse layer call then gets the graph's extra
    ``active`` input. Submodule paths are preserved, so ``state_dict()`` loads into the dense
    backbone with the original names.
    """

    def __init__(self, backbone: nn.Module, feature_modules: Sequence[str]) -> None:
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.feature_modules = list(feature_modules)
        model = sparsify(copy.deepcopy(backbone))
        nodes = {name: f"f{i}" for i, name in enumerate(self.feature_modules)}
        body = create_feature_extractor(model, return_nodes=nodes,
                                        tracer_kwargs={"leaf_modules": list(SPARSE_LAYERS)})
        graphs = {id(g): g for g in (getattr(body, "train_graph", None), getattr(body, "eval_graph", None), body.graph)
                  if g is not None}
        for graph in graphs.values():
            self._thread_active(graph, body)
        body.recompile()
        self.body = body

    @staticmethod
    def _thread_active(graph: torch.fx.Graph, root: nn.Module) -> None:
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        with graph.inserting_after(placeholders[-1]):
            active = graph.placeholder("active", default_value=None)
        for node in graph.nodes:
            if node.op == "call_module" and isinstance(root.get_submodule(node.target), _SparseMixin):
                if len(node.args) != 1 or node.kwargs:
                    raise TypeError(f"sparse layer {node.target} is called with {len(node.args)} args / "
                                    f"{list(node.kwargs)} kwargs; expected one tensor")
                node.args = (node.args[0], active)
        graph.lint()

    def forward(self, x: Tensor, active: Tensor | None = None) -> list[Tensor]:
        """Features from shallow to deep; with ``active`` ([B, *grid] bool) masked positions are 0."""
        out = self.body(x, active)
        return [out[f"f{i}"] for i in range(len(self.feature_modules))]


def feature_extractor(backbone: nn.Module, feature_modules: Sequence[str]) -> nn.Module:
    """Dense counterpart of :class:`SparseEncoder`: ``module(x)`` -> dict ``{f0: ..., f1: ...}``."""
    from torchvision.models.feature_extraction import create_feature_extractor

    return create_feature_extractor(backbone, return_nodes={n: f"f{i}" for i, n in enumerate(feature_modules)})
