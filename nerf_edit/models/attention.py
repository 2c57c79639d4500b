"""Attention processors that materialise probabilities: recording a diffusers UNet's cross-attention (ZONE
localises edits with it), and `prepare_attention`/`finish_attention`, diffusers' plain attention maths around the
probabilities, which every processor here (ViMAEdit's control too) shares.

diffusers' fused processors (`AttnProcessor2_0`, SDPA) never materialise the attention probabilities, so the
cross-attention layers get a recording processor for the duration of a `record_cross_attention` block; the
self-attention layers keep their fast processor, and every layer gets its own processor back afterwards.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention


class CrossAttentionRecorder:
    """Cross-attention probabilities averaged over heads and the kept batch branches, summed per layer over
    denoising steps.

    The UNet batch is `branches` stacked branches of equal size (IP2P's guided call: [text, image-only, null]);
    `branch` (an index, or several to average) is what is kept. `sums[layer]` is [b, N, L] (N = that layer's h·w,
    L = tokens) over `num_steps` steps; with `keep_steps`, `maps[step][layer]` keeps every step's maps too (memory
    grows with the steps).
    """

    def __init__(self, branches: int = 3, branch: Union[int, Sequence[int]] = 0, skip_mid_block: bool = True,
                 keep_steps: bool = False):
        self.branches = branches
        self.kept_branches = (branch,) if isinstance(branch, int) else tuple(branch)
        self.skip_mid_block = skip_mid_block
        self.keep_steps = keep_steps
        self.sums: Dict[str, torch.Tensor] = {}
        self.counts: Dict[str, int] = defaultdict(int)
        self.maps: List[Dict[str, torch.Tensor]] = [{}]
        self.num_steps = 0
        self._step_has_calls = False

    def wants(self, layer: str) -> bool:
        return not (self.skip_mid_block and layer.startswith("mid_block"))

    def record(self, layer: str, probs: torch.Tensor, heads: int) -> None:
        """probs [B·heads, N, L] as diffusers' `get_attention_scores` returns them (batch-major)."""
        batch = probs.shape[0] // heads
        probs = probs.view(batch, heads, *probs.shape[1:])
        size = batch // self.branches
        kept = torch.stack([probs[k * size : (k + 1) * size] for k in self.kept_branches])  # [K, b, heads, N, L]
        kept = kept.float().mean((0, 2)).detach()  # [b, N, L]
        self.sums[layer] = kept if layer not in self.sums else self.sums[layer] + kept
        self.counts[layer] += 1
        if self.keep_steps:
            self.maps[-1][layer] = kept
        self._step_has_calls = True

    def next_step(self) -> None:
        """Close the current denoising step (call once per denoising step, after its guided UNet call)."""
        if self._step_has_calls:
            self.num_steps += 1
            self._step_has_calls = False
            if self.keep_steps:
                self.maps.append({})

    def average(self, image_size: tuple[int, int], layers: str = "coarsest") -> torch.Tensor:
        """Maps averaged over steps and layers, on the grid of the chosen layers. -> [b, h, w, L]

        `layers`: "coarsest" takes the lowest-resolution up/down layers (1/32 of the image in SD: what ZONE's
        code averages); "all" takes every recorded layer, each resized to the coarsest grid first.
        """
        if not self.sums:
            raise RuntimeError("no cross-attention was recorded: run the UNet inside record_cross_attention()")
        coarsest = min(total.shape[1] for total in self.sums.values())
        height, width = _grid(coarsest, image_size)
        average, count = None, 0
        for layer, total in self.sums.items():
            if layers == "coarsest" and total.shape[1] != coarsest:
                continue
            grid = (total / self.counts[layer]).view(total.shape[0], *_grid(total.shape[1], image_size), total.shape[2])
            if grid.shape[1:3] != (height, width):
                grid = F.adaptive_avg_pool2d(grid.permute(0, 3, 1, 2), (height, width)).permute(0, 2, 3, 1)
            average = grid if average is None else average + grid
            count += 1
        return average / count


def _grid(num_pixels: int, image_size: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) of a layer with `num_pixels` cells for an image of `image_size` (the UNet halves with ceil)."""
    height, width = image_size
    factor = 1
    while True:
        h, w = -(-height // factor), -(-width // factor)
        if h * w == num_pixels:
            return h, w
        if h * w < num_pixels or factor > max(height, width):
            raise ValueError(f"no downsampling of {image_size} has {num_pixels} cells")
        factor *= 2


@dataclass
class PreparedAttention:
    """diffusers' plain attention (`AttnProcessor`) up to the probabilities: what a processor that materialises
    them needs (query, key and value per head [B·heads, N, d]) and what `finish_attention` needs to end it."""

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    attention_mask: Optional[torch.Tensor]
    residual: torch.Tensor
    spatial_shape: Optional[tuple]  # (B, C, H, W) when the layer's input was 4-D


def prepare_attention(attn: Attention, hidden_states: torch.Tensor, context: Optional[torch.Tensor] = None,
                      attention_mask: Optional[torch.Tensor] = None, temb: Optional[torch.Tensor] = None
                      ) -> PreparedAttention:
    """Norms, projections and head split of diffusers' `AttnProcessor`; `context` None is self-attention."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    spatial_shape = None
    if hidden_states.ndim == 4:
        spatial_shape = tuple(hidden_states.shape)
        batch_size, channel, height, width = spatial_shape
        hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
    batch_size, sequence_length, _ = hidden_states.shape if context is None else context.shape
    attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    if context is None:
        context = hidden_states
    elif attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    key = attn.head_to_batch_dim(attn.to_k(context))
    value = attn.head_to_batch_dim(attn.to_v(context))
    return PreparedAttention(attn.head_to_batch_dim(query), key, value, attention_mask, residual, spatial_shape)


def finish_attention(attn: Attention, prepared: PreparedAttention, hidden_states: torch.Tensor) -> torch.Tensor:
    """The rest of diffusers' `AttnProcessor` after the heads were merged: output projection, shape, residual."""
    hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
    if prepared.spatial_shape is not None:
        hidden_states = hidden_states.transpose(-1, -2).reshape(*prepared.spatial_shape)
    if attn.residual_connection:
        hidden_states = hidden_states + prepared.residual
    return hidden_states / attn.rescale_output_factor


class RecordingCrossAttnProcessor:
    """diffusers' plain attention (`AttnProcessor`) that also hands its probabilities to a recorder."""

    def __init__(self, layer: str, recorder: CrossAttentionRecorder):
        self.layer = layer
        self.recorder = recorder

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        temb: Optional[torch.Tensor] = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        prepared = prepare_attention(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        probs = attn.get_attention_scores(prepared.query, prepared.key, prepared.attention_mask)  # [B·heads, N, L]
        self.recorder.record(self.layer, probs, attn.heads)
        return finish_attention(attn, prepared, attn.batch_to_head_dim(torch.bmm(probs, prepared.value)))


def cross_attention_layers(unet: torch.nn.Module) -> List[str]:
    """Names of the UNet's cross-attention modules (BasicTransformerBlock.attn2 in SD-style UNets)."""
    return [name for name, module in unet.named_modules() if isinstance(module, Attention) and module.is_cross_attention]


@contextlib.contextmanager
def record_cross_attention(unet, recorder: CrossAttentionRecorder) -> Iterator[CrossAttentionRecorder]:
    """Within the block, the UNet's wanted cross-attention layers record into `recorder`; all else is untouched."""
    original = dict(unet.attn_processors)
    recorded = {layer for layer in cross_attention_layers(unet) if recorder.wants(layer)}
    processors = {
        key: RecordingCrossAttnProcessor(key[: -len(".processor")], recorder) if key[: -len(".processor")] in recorded
        else processor
        for key, processor in original.items()
    }
    unet.set_attn_processor(processors)
    try:
        yield recorder
    finally:
        unet.set_attn_processor(original)
