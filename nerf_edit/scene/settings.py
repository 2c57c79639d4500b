"""What a user may change while a 3D run edits (the viewer's prompt, sliders and pause), as one object handed to
the edit loop at a step boundary: the loop reads no live control, so every part of one step sees the same values."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nerf_edit.config.editor import EditorConfig


@dataclass(frozen=True)
class EditSettings:
    prompt: str  # the instruction edits use
    guidance_scale: float  # text guidance s_T
    image_guidance_scale: float  # image guidance s_I
    tau: float  # relevance threshold of the edit mask
    paused: bool = False  # no dataset update while set

    @classmethod
    def of(cls, prompt: str, editing: EditorConfig) -> "EditSettings":
        """The run's settings before anything changes: its prompt and editor settings."""
        return cls(prompt, editing.guidance_scale, editing.image_guidance_scale, editing.tau)

    def apply_to(self, editing: EditorConfig) -> None:
        """Set the editor's (copied) settings to these: they act on the next edit."""
        editing.guidance_scale = float(self.guidance_scale)
        editing.image_guidance_scale = float(self.image_guidance_scale)
        editing.tau = float(self.tau)

    def replace(self, **changes) -> "EditSettings":
        return dataclasses.replace(self, **changes)
