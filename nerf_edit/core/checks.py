"""Checks of what an editor is handed (images, instruction, conditioning, mask, background): one `EditorError` line
each, saying what is wrong and how to fix it. Every editor (IP2P-based, ZONE, colorkey, a plug-in) uses these, so
the same mistake reads the same whichever editor it is made with."""

from __future__ import annotations

from typing import Optional

import torch

from nerf_edit.errors import EditorError


def check_images(images: torch.Tensor, name: str = "images") -> None:
    """A [B, 3, H, W] tensor of at least 8x8 pixels."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise EditorError(f"{name} must be a [B, 3, H, W] tensor in [0, 1], got {shape}")
    if images.shape[-1] < 8 or images.shape[-2] < 8:
        raise EditorError(f"{name} are {images.shape[-2]}x{images.shape[-1]}: at least 8x8 pixels are needed")


def check_instruction(instruction: str) -> None:
    """A non-empty string."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise EditorError("the instruction is empty: say what to change, e.g. 'turn the ball blue'")


def check_conditioning(conditioning: Optional[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """The view an edit is conditioned on: `images` unless given; one per image, of the same size."""
    if conditioning is None:
        return images
    check_images(conditioning, "conditioning")
    if conditioning.shape != images.shape:
        raise EditorError(f"conditioning is {tuple(conditioning.shape)} but images are {tuple(images.shape)}: "
                          "give one conditioning view per image, of the same size")
    return conditioning


def check_mask(mask: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """A caller's mask as [B, H, W] bool on `images`' device."""
    if mask.shape != (images.shape[0], *images.shape[-2:]):
        raise EditorError(f"mask must be [B, H, W] = {(images.shape[0], *images.shape[-2:])}, got {tuple(mask.shape)}")
    return mask.to(images.device).bool()


def check_background(background: Optional[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """The image kept outside the mask: `images` unless given; same shape as `images`."""
    if background is None:
        return images
    check_images(background, "background")
    if background.shape != images.shape:
        raise EditorError(f"background must have the images' shape {tuple(images.shape)}, got {tuple(background.shape)}")
    return background
