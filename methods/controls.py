"""The viewer's controls of an edit run: the prompt box and its Apply button, the guidance and τ sliders, Pause
and Reset. nerfstudio's viewer finds these ViewerElements on the pipeline (through this module); the edit loop
never reads them live: `take` hands over one `EditSettings` at a step boundary."""

from __future__ import annotations

from typing import Optional

from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import ViewerButton, ViewerCheckbox, ViewerSlider, ViewerText
from torch import nn

from nerf_edit.editing.editor import Editor, check_prompt
from nerf_edit.errors import EditorError
from nerf_edit.scene.settings import EditSettings


class ViewerControls(nn.Module):
    """The controls, starting at `settings`. The viewer's thread only records what was asked (a prompt applied,
    Reset pressed); the training loop takes it at the next step boundary (`take`, `take_reset`).

    The text box is a draft: every keystroke changes it, and a prompt change recomputes every view's relevance, so
    a prompt takes effect only when applied (and only if the editor can use it)."""

    def __init__(self, settings: EditSettings):
        super().__init__()
        self.settings = settings
        # asked for in the viewer (its thread), taken at the next step: training never sees them change mid-step
        self.requested_prompt: Optional[str] = None
        self.requested_reset = False
        self.prompt = ViewerText("Edit prompt", settings.prompt, hint="press 'Apply prompt' to edit with it")
        self.apply_prompt = ViewerButton("Apply prompt", cb_hook=lambda _: self.request_prompt(self.prompt.value))
        self.guidance = ViewerSlider("Text guidance", settings.guidance_scale, 0.0, 20.0, 0.5)
        self.image_guidance = ViewerSlider("Image guidance", settings.image_guidance_scale, 0.0, 5.0, 0.1)
        self.tau = ViewerSlider("Relevance threshold τ", settings.tau, 0.0, 1.0, 0.05)
        self.pause = ViewerCheckbox("Pause edits", False)
        self.reset = ViewerButton("Reset edits", cb_hook=lambda _: self.request_reset())

    def request_prompt(self, prompt: str) -> None:
        """The viewer's "Apply prompt" (its thread): the prompt edits use from the next training step on."""
        self.requested_prompt = prompt

    def request_reset(self) -> None:
        """The viewer's "Reset edits" (its thread): back to the original views at the next training step."""
        self.requested_reset = True

    def take_reset(self) -> bool:
        """At a step boundary: whether a reset of the edits was asked for since the last step."""
        requested, self.requested_reset = self.requested_reset, False
        return requested

    def take(self, editor: Optional[Editor]) -> EditSettings:
        """At a step boundary: the settings the controls show. A prompt applied in the viewer becomes the edits'
        prompt if `editor` can use it; else one line says why and edits go on with the prompt they had (training
        never stops for a typo)."""
        requested, self.requested_prompt = self.requested_prompt, None
        prompt = self.settings.prompt
        if requested is not None and requested.strip() != prompt.strip() and editor is not None:
            try:
                check_prompt(editor, requested)
                prompt = requested.strip()
                CONSOLE.print(f"[green]Prompt applied: {prompt!r}", soft_wrap=True)
            except EditorError as error:
                CONSOLE.print(f"[yellow]Prompt {requested!r} not applied: {error}; edits go on with {prompt!r}",
                              soft_wrap=True)  # one line, also in logs
        self.settings = EditSettings(prompt, float(self.guidance.value), float(self.image_guidance.value),
                                     float(self.tau.value), bool(self.pause.value))
        return self.settings
