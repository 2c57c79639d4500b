"""Attention for ViMAEdit: recording of cross- and self-attention maps, and Prompt-to-Prompt controls.

diffusers' fused processors never materialise attention probabilities, so, inside `attention_control(unet,
control)`, every attention layer gets a `ControlledAttnProcessor`: it computes the probabilities explicitly only
where the control needs them (a map to record or a P2P edit this step) and otherwise calls the layer's own
processor (SDPA, or diffusers' IP-Adapter processor), so full-resolution self-attention (4096² per head at 512²) is
never materialised unless asked. Layers get their processors back on exit.

The UNet batch is `layout.chunks` equal chunks of B images: ViMAEdit's [uncond source, uncond target, cond
source, cond target], IP2P's [text+image, image, null]. Maps are recorded from `layout.record` chunks, head
averaged, after the P2P edits (the official code stores the very tensor it edits in place).

Prompt-to-Prompt (as the official ViMAEdit code, attention_control.py AttentionRefine), on the conditional chunks:
* cross-attention refinement for steps [0, cross_steps): the target's attention to tokens it shares with the source
  prompt is the source's (aligned by `vimaedit.refinement_mapper`), its new tokens keep their own, in every layer;
* self-attention injection for steps [0, self_steps): the target's self-attention probabilities are the source's
  in layers with at most (h/2)·(w/2) cells (32² or coarser at SD's 64² latent);
* IP-Adapter attention injection for steps [0, image_steps): the same for the image-prompt attention (official
  default 0.1 of the steps).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from nerf_edit.models.attention import finish_attention, prepare_attention


@dataclass(frozen=True)
class BatchLayout:
    """How a UNet batch splits: `chunks` equal parts of B images; maps are recorded from the `record` chunks; P2P
    copies attention from chunk `base` into chunk `edited` (None: no P2P)."""

    chunks: int
    record: Tuple[int, ...]
    base: Optional[int] = None
    edited: Optional[int] = None


VIMAEDIT_LAYOUT = BatchLayout(chunks=4, record=(2, 3), base=2, edited=3)  # [uncond src, uncond tar, cond src, cond tar]
IP2P_LAYOUT = BatchLayout(chunks=3, record=(0,))  # nerf_edit.models.ip2p predict_guided: [text+image, image, null]


def attention_factors(unet) -> List[int]:
    """Downsampling factors (relative to the latent) of the UNet levels that have cross-attention: SD-1.5 has 1, 2
    and 4 (64², 32², 16² at 512²)."""
    return [2**level for level, kind in enumerate(unet.config.down_block_types) if "CrossAttn" in kind]


def grounding_factors(unet) -> Tuple[int, int]:
    """(cross-attention factor, self-attention factor) ViMAEdit grounds with: latent/4 and latent/2 (SD-1.5's 16²
    and 32²); a UNet without those levels (the 2-level tiny test IP2P) uses its coarsest attention level for both
    missing ones."""
    factors = attention_factors(unet)
    if not factors:
        raise ValueError("the UNet has no cross-attention layers to ground with")
    cross = 4 if 4 in factors else max(factors)
    self_factor = 2 if 2 in factors else max(factors)
    return cross, self_factor


def layer_cells(latent_size: Tuple[int, int], factor: int) -> int:
    """Cells of the UNet layers at 1/factor of the latent grid (the UNet halves with ceil)."""
    height, width = latent_size
    return -(-height // factor) * -(-width // factor)


class AttentionControl:
    """Per-step state shared by all the UNet's processors: which maps to record, which P2P edits are on.

    Set `step` before each UNet call; after it, `pop_step()` returns that call's maps: cross-attention maps
    [R·B, N, L] of every layer with `cross_cells` cells and the mean self-attention [R·B, N, N] of the layers with
    `self_cells` cells (R = recorded chunks; None where not asked)."""

    def __init__(
        self,
        layout: BatchLayout,
        latent_size: Tuple[int, int],
        record_cross_factor: Optional[int] = None,
        record_self_factor: Optional[int] = None,
        self_steps: int = 0,
        cross_steps: int = 0,
        image_steps: int = 0,
        inject_factor: int = 2,
        mapper: Optional[torch.Tensor] = None,
        alphas: Optional[torch.Tensor] = None,
    ):
        self.layout = layout
        self.cross_cells = None if record_cross_factor is None else layer_cells(latent_size, record_cross_factor)
        self.self_cells = None if record_self_factor is None else layer_cells(latent_size, record_self_factor)
        self.inject_cells = layer_cells(latent_size, inject_factor)
        self.self_steps, self.cross_steps, self.image_steps = self_steps, cross_steps, image_steps
        self.mapper = mapper  # [L] long, target position -> source position
        self.alphas = alphas  # [L]
        self.recording = True
        self.step = 0
        self._cross: List[torch.Tensor] = []
        self._self_sum: Optional[torch.Tensor] = None
        self._self_count = 0

    # -- what each layer must do this step
    def p2p(self) -> bool:
        return self.layout.base is not None

    def self_inject(self, cells: int) -> bool:
        return self.p2p() and self.step < self.self_steps and cells <= self.inject_cells

    def cross_refine(self) -> bool:
        return self.p2p() and self.step < self.cross_steps and self.mapper is not None

    def image_inject(self, cells: int) -> bool:
        return self.p2p() and self.step < self.image_steps and cells <= self.inject_cells

    def record_cross(self, cells: int) -> bool:
        return self.recording and cells == self.cross_cells

    def record_self(self, cells: int) -> bool:
        return self.recording and cells == self.self_cells

    def needs_probabilities(self, is_cross: bool, cells: int, has_image_prompt: bool) -> bool:
        if is_cross:
            return self.cross_refine() or self.record_cross(cells) or (has_image_prompt and self.image_inject(cells))
        return self.self_inject(cells) or self.record_self(cells)

    # -- edits and records; probs [chunks·B, heads, N, K]
    def _chunk(self, probs: torch.Tensor, index: int) -> torch.Tensor:
        size = probs.shape[0] // self.layout.chunks
        return probs[index * size : (index + 1) * size]

    def _copy_base(self, probs: torch.Tensor) -> torch.Tensor:
        size = probs.shape[0] // self.layout.chunks
        edited = self.layout.edited * size
        probs = probs.clone()
        probs[edited : edited + size] = self._chunk(probs, self.layout.base)
        return probs

    def self_attention(self, probs: torch.Tensor) -> torch.Tensor:
        cells = probs.shape[2]
        if self.self_inject(cells):
            probs = self._copy_base(probs)
        if self.record_self(cells):
            kept = torch.cat([self._chunk(probs, i) for i in self.layout.record]).float().mean(1)  # [R·B, N, N]
            self._self_sum = kept if self._self_sum is None else self._self_sum + kept
            self._self_count += 1
        return probs

    def cross_attention(self, probs: torch.Tensor) -> torch.Tensor:
        cells = probs.shape[2]
        if self.cross_refine():
            size = probs.shape[0] // self.layout.chunks
            base = self._chunk(probs, self.layout.base)[..., self.mapper.to(probs.device)]  # [B, heads, N, L]
            alphas = self.alphas.to(probs.device, probs.dtype)
            edited = self.layout.edited * size
            probs = probs.clone()
            probs[edited : edited + size] = base * alphas + probs[edited : edited + size] * (1 - alphas)
        if self.record_cross(cells):
            self._cross.append(torch.cat([self._chunk(probs, i) for i in self.layout.record]).float().mean(1))
        return probs

    def image_attention(self, probs: torch.Tensor) -> torch.Tensor:
        return self._copy_base(probs) if self.image_inject(probs.shape[2]) else probs

    def pop_step(self) -> Tuple[List[torch.Tensor], Optional[torch.Tensor]]:
        """(cross maps of this UNet call, each [R·B, N, L]; mean self map [R·B, N, N] or None), then reset."""
        cross = self._cross
        self_map = None if self._self_sum is None else self._self_sum / self._self_count
        self._cross, self._self_sum, self._self_count = [], None, 0
        return cross, self_map


class ControlledAttnProcessor:
    """An attention layer's processor that materialises probabilities when `control` needs them (diffusers'
    plain attention maths, plus IP-Adapter's decoupled image attention when the layer has it) and otherwise
    delegates to the layer's own processor `base`."""

    def __init__(self, control: AttentionControl, base):
        self.control = control
        self.base = base

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states=None,
        attention_mask: Optional[torch.Tensor] = None,
        temb: Optional[torch.Tensor] = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        image_prompt = None
        text_states = encoder_hidden_states
        if isinstance(encoder_hidden_states, tuple):
            text_states, image_prompt = encoder_hidden_states
        cells = hidden_states.shape[-2] * hidden_states.shape[-1] if hidden_states.ndim == 4 else hidden_states.shape[1]
        if not self.control.needs_probabilities(text_states is not None, cells, image_prompt is not None):
            return self.base(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        if kwargs.get("ip_adapter_masks") is not None:
            raise ValueError("IP-Adapter masks are not supported with ViMAEdit's attention control")

        prepared = prepare_attention(attn, hidden_states, text_states, attention_mask, temb)
        query, key, value = prepared.query, prepared.key, prepared.value
        probs = attn.get_attention_scores(query, key, prepared.attention_mask)  # [B·heads, N, K]
        probs = probs.view(-1, attn.heads, *probs.shape[1:])  # [B, heads, N, K]
        probs = self.control.cross_attention(probs) if text_states is not None else self.control.self_attention(probs)
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs.reshape(-1, *probs.shape[2:]).to(value.dtype), value))

        if image_prompt is not None:  # diffusers' IPAdapterAttnProcessor: attention to each image prompt, scaled
            for states, scale, to_k_ip, to_v_ip in zip(image_prompt, self.base.scale, self.base.to_k_ip, self.base.to_v_ip):
                ip_key = attn.head_to_batch_dim(to_k_ip(states))
                ip_value = attn.head_to_batch_dim(to_v_ip(states))
                ip_probs = attn.get_attention_scores(query, ip_key, None)
                ip_probs = self.control.image_attention(ip_probs.view(-1, attn.heads, *ip_probs.shape[1:]))
                ip_out = torch.bmm(ip_probs.reshape(-1, *ip_probs.shape[2:]).to(ip_value.dtype), ip_value)
                hidden_states = hidden_states + scale * attn.batch_to_head_dim(ip_out)

        return finish_attention(attn, prepared, hidden_states)


@contextlib.contextmanager
def attention_control(unet, control: AttentionControl) -> Iterator[AttentionControl]:
    """Within the block every attention layer of `unet` runs under `control`; the original processors come back
    afterwards (also on error)."""
    original: Dict[str, object] = dict(unet.attn_processors)
    unet.set_attn_processor({key: ControlledAttnProcessor(control, processor) for key, processor in original.items()})
    try:
        yield control
    finally:
        unet.set_attn_processor(original)


def average_maps(maps: List[torch.Tensor]) -> torch.Tensor:
    """Mean of same-shaped maps. list of [R, N, K] -> [R, N, K]"""
    return torch.stack(maps).mean(0)


def grid_of(cells: int, latent_size: Tuple[int, int]) -> Tuple[int, int]:
    """(h, w) of a layer with `cells` cells for a latent of `latent_size` (ceil halving)."""
    height, width = latent_size
    factor = 1
    while factor <= max(height, width):
        h, w = -(-height // factor), -(-width // factor)
        if h * w == cells:
            return h, w
        factor *= 2
    raise ValueError(f"no downsampling of {latent_size} has {cells} cells")


def upsample_flat(flat: torch.Tensor, latent_size: Tuple[int, int], size: Tuple[int, int]) -> torch.Tensor:
    """Nearest resize of flattened maps from their layer grid to `size`. [R, N] -> [R, H·W]"""
    grid = grid_of(flat.shape[1], latent_size)
    return F.interpolate(flat.reshape(-1, 1, *grid), size=size, mode="nearest").reshape(flat.shape[0], -1)
