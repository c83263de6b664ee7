"""GraphMAE (Hou et al. 2022): mask node features, encode, re-mask, decode, scaled cosine error.

The mechanism, on any graph (``x`` ``[N, F]``, ``edge_index`` ``[2, E]``, ``node_mask`` ``[N]``
bool, True = hidden):

1. ``mask_features``: hidden nodes' features are replaced by one learnable mask token;
2. ``forward_encoder``: a GIN (``torch_geometric.nn.GINConv``) over the whole graph;
3. ``remask``: a linear map, then the hidden nodes' codes set to zero, so the decoder must
   rebuild them from their neighbours' codes rather than copy what the encoder guessed;
4. ``forward_decoder``: a one-layer GIN back to the feature size;
5. ``forward_loss``: scaled cosine error ``(1 - cos)^beta`` on the hidden nodes only.

Optional ``context`` ``[N, C]`` are node features that are never hidden and never reconstructed
(which joint a node is, a positional encoding): they are concatenated to the encoder's input and,
through a linear map, added to the decoder's input after the re-mask, as MAE adds position
embeddings to its mask tokens. Without them a node inside a hidden region (all its neighbours
hidden too, as with whole body parts) reaches the 1-layer decoder as zeros only, so the decoder
cannot even tell which node it is rebuilding.

GraphMAE's optional random-substitution of a share of the masked nodes (``replace_rate``) is left
out (its default in the paper's node tasks is 0 or 0.1-0.15 and SkeletonMAE does not use it).
Normalisation is LayerNorm (GraphMAE uses BatchNorm in its GIN): a sample's codes then do not
depend on what else is in its batch, so the app and the CLI give the same numbers as a batch run.
PyG supplies the message passing; the layers are written out here because the decoder needs the
encoder's output between two steps that PyG's ready-made ``GIN`` model runs in one call.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.nn import GINConv

from maskworks.core.losses import scaled_cosine_error


def gin_layer(in_dim: int, out_dim: int, hidden: int | None = None) -> GINConv:
    """``GINConv`` with a 2-layer MLP (``h' = MLP((1 + eps) h + sum of neighbours)``), eps learned."""
    hidden = hidden or out_dim
    return GINConv(nn.Sequential(nn.Linear(in_dim, hidden), nn.PReLU(), nn.Linear(hidden, out_dim)), train_eps=True)


class GIN(nn.Module):
    """``num_layers`` GIN layers; LayerNorm + PReLU after each but (when ``last_activation`` is False) the last."""

    def __init__(self, in_dim: int, hidden: int, num_layers: int, out_dim: int | None = None,
                 last_activation: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        out_dim = out_dim or hidden
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.convs = nn.ModuleList(gin_layer(a, b, hidden) for a, b in zip(dims[:-1], dims[1:]))
        n_post = num_layers if last_activation else num_layers - 1
        self.norms = nn.ModuleList(nn.LayerNorm(d) for d in dims[1:n_post + 1])
        self.acts = nn.ModuleList(nn.PReLU() for _ in range(n_post))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, edge_index: Tensor, return_hidden: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        hidden = []
        for i, conv in enumerate(self.convs):
            x = conv(x, edge_index)
            if i < len(self.norms):
                x = self.dropout(self.acts[i](self.norms[i](x)))
            hidden.append(x)
        return (x, hidden) if return_hidden else x


@dataclass
class GraphMAEOutput:
    loss: Tensor
    recon: Tensor   # [N, F] decoder output for every node (the loss reads the masked ones)
    codes: Tensor   # [N, D] encoder output on the masked input


class GraphMAE(nn.Module):
    """Masked feature reconstruction on graphs: GIN encoder, re-mask, 1-layer GIN decoder, SCE."""

    def __init__(self, in_dim: int, hidden: int = 64, num_layers: int = 3, decoder_layers: int = 1,
                 beta: float = 2.0, dropout: float = 0.0, context_dim: int = 0) -> None:
        super().__init__()
        self.beta = beta
        self.context_dim = context_dim
        self.mask_token = nn.Parameter(torch.zeros(in_dim))
        self.encoder = GIN(in_dim + context_dim, hidden, num_layers, dropout=dropout)
        self.encoder_to_decoder = nn.Linear(hidden, hidden, bias=False)
        self.context_to_decoder = nn.Linear(context_dim, hidden, bias=False) if context_dim else None
        self.decoder = GIN(hidden, hidden, decoder_layers, out_dim=in_dim, last_activation=False)
        nn.init.normal_(self.mask_token, std=0.02)

    def mask_features(self, x: Tensor, node_mask: Tensor) -> Tensor:
        """Hidden nodes' features -> the learnable mask token (every other node unchanged)."""
        m = node_mask.reshape(-1, 1).to(x.dtype)
        return x * (1 - m) + self.mask_token.to(x.dtype) * m

    def forward_encoder(self, x: Tensor, edge_index: Tensor, node_mask: Tensor | None = None,
                        context: Tensor | None = None) -> Tensor:
        """Codes ``[N, D]``; without ``node_mask`` the unmasked path (no token anywhere)."""
        if node_mask is not None:
            x = self.mask_features(x, node_mask)
        if self.context_dim:
            x = torch.cat([x, context.to(x.dtype)], dim=-1)
        return self.encoder(x, edge_index)

    def remask(self, codes: Tensor, node_mask: Tensor) -> Tensor:
        """``encoder_to_decoder``, then the hidden nodes' rows set to exactly zero."""
        return self.encoder_to_decoder(codes).masked_fill(node_mask.reshape(-1, 1), 0.0)

    def forward_decoder(self, codes: Tensor, edge_index: Tensor, node_mask: Tensor,
                        context: Tensor | None = None) -> Tensor:
        h = self.remask(codes, node_mask)
        if self.context_to_decoder is not None:
            h = h + self.context_to_decoder(context.to(h.dtype))
        return self.decoder(h, edge_index)

    def forward_loss(self, recon: Tensor, x: Tensor, node_mask: Tensor) -> Tensor:
        """SCE ``mean((1 - cos(recon, x))^beta)`` over the hidden nodes."""
        m = node_mask.reshape(-1)
        return scaled_cosine_error(recon[m], x[m], gamma=self.beta)

    def forward(self, x: Tensor, edge_index: Tensor, node_mask: Tensor, context: Tensor | None = None) -> GraphMAEOutput:
        codes = self.forward_encoder(x, edge_index, node_mask, context)
        recon = self.forward_decoder(codes, edge_index, node_mask, context)
        return GraphMAEOutput(self.forward_loss(recon, x, node_mask), recon, codes)

    @torch.no_grad()
    def embed(self, x: Tensor, edge_index: Tensor, context: Tensor | None = None) -> Tensor:
        """Codes of the unmasked graph (what a downstream model uses)."""
        return self.forward_encoder(x, edge_index, None, context)
