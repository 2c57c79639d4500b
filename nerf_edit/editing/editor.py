"""The editor interface: one request type (`EditRequest`), one result type (`EditResult`), one base class (`Editor`).

An editor answers two questions for a batch of images [B, 3, H, W] in [0, 1]:
  relevance(images, instruction, conditioning=None, generator=None) -> [B, H, W] in [0, 1]   (where it acts)
  run(request: EditRequest) -> EditResult                                                   (the edit)
`Editor.edit(images, instruction, conditioning=None, mask=None, strength=1.0, generator=None, on_step=None,
background=None)` is the same edit called with keywords: it checks the inputs once, builds the request and runs it.
`conditioning` is the image IP2P is conditioned on (default: `images`); `background` is what stays outside the
mask (default: `images`). The 3D method computes relevance of the original view conditioned on the render, and
edits the render conditioned on the original view with the original view as background (official WYS: outside
the mask the training view is the photo, never the render). Whatever an editor returns for a caller's mask,
`edit` keeps the background outside it bit for bit (`keep_background`): plug-ins get the guarantee too.

Editors are picked by name (`nerf_edit.registry.EDITORS`) or by import path `package.module:Class`: a subclass of
`Editor` constructed as `Class(EditorConfig)`. Optional: a static `check_prompt(instruction)` (colorkey needs two
colour words), `relevance_reads_conditioning = False` for an editor whose relevance ignores `conditioning` (the
3D method then renders no view for its relevance targets), and a classmethod `check_settings(config, prefix,
check_models, model_flag)` for settings of its own (checked before any model loads).

The IP2P editors derive from `nerf_edit.editing.ip2p_editor.IP2PEditor` (model, localiser part, denoising loop
with step hooks); WYS's editor is `nerf_edit.wys`, ZONE's `nerf_edit.zone`. See docs/architecture.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch

from nerf_edit.config.checks import check_editor_config
from nerf_edit.config.editor import EditorConfig
from nerf_edit.core.checks import check_background, check_conditioning, check_images, check_instruction, check_mask
from nerf_edit.core.guided import StepCallback
from nerf_edit.editing.localizer import Localization
from nerf_edit.errors import EditorError
from nerf_edit.registry import EDITORS, resolve


@dataclass
class EditRequest:
    """One edit, as every editor's `run` receives it (checked: build it with `EditRequest.checked`)."""

    images: torch.Tensor  # [B, 3, H, W] in [0, 1]: what the edit starts from
    instruction: str
    conditioning: torch.Tensor  # [B, 3, H, W]: the view IP2P is conditioned on (default: images)
    background: torch.Tensor  # [B, 3, H, W]: what stays outside the mask (default: images)
    mask: Optional[torch.Tensor] = None  # [B, H, W] bool where the edit may act; None: the editor's localiser
    strength: float = 1.0  # the noise level the edit starts from (1: full strength)
    generator: Optional[torch.Generator] = None  # the edit's random draws (noise, localiser, samplers)
    on_step: Optional[StepCallback] = None  # called after every denoising step (progress, tests)

    @classmethod
    def checked(cls, images: torch.Tensor, instruction: str, conditioning: Optional[torch.Tensor] = None,
                mask: Optional[torch.Tensor] = None, strength: float = 1.0,
                generator: Optional[torch.Generator] = None, on_step: Optional[StepCallback] = None,
                background: Optional[torch.Tensor] = None) -> "EditRequest":
        """The request for these inputs, each checked (one EditorError line for a bad one), defaults filled in."""
        check_images(images)
        check_instruction(instruction)
        conditioning = check_conditioning(conditioning, images)
        background = check_background(background, images)
        mask = None if mask is None else check_mask(mask, images)
        return cls(images, instruction, conditioning, background, mask, strength, generator, on_step)


@dataclass
class EditResult:
    images: torch.Tensor  # [B, 3, H, W] edited and composited
    relevance: Optional[torch.Tensor] = None  # [B, H, W] in [0, 1], None for editors that don't compute it
    mask: Optional[torch.Tensor] = None  # [B, H, W] bool, the pixels allowed to change
    localization: Optional[Localization] = None  # what the localiser found (None when a mask was given)


class Editor(ABC):
    """What every editor implements: `relevance` and `run(EditRequest)`; `edit` is `run` with keywords."""

    relevance_reads_conditioning: ClassVar[bool] = True  # False: relevance() ignores `conditioning`
    takes_localizer: ClassVar[bool] = False  # whether `config.localizer` means anything to it (IP2P editors)

    def __init__(self, config: EditorConfig):
        self.config = config

    @classmethod
    def check_settings(cls, config: EditorConfig, prefix: str = "--", check_models: bool = True,
                       model_flag: Optional[str] = None) -> None:
        """Every setting this editor reads, named by its flag (`prefix` + name), before any model loads (with
        `check_models`, also that its models can be had): here the shared ones; editors extend it."""
        check_editor_config(config, prefix)

    @abstractmethod
    def relevance(self, images: torch.Tensor, instruction: str, conditioning: Optional[torch.Tensor] = None,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Where `instruction` acts on `images` (conditioned on `conditioning`). -> [B, H, W] in [0, 1]"""

    @abstractmethod
    def run(self, request: EditRequest) -> EditResult:
        """The edit of a checked request; outside `result.mask` the result should be `request.background`."""

    def edit(self, images: torch.Tensor, instruction: str, conditioning: Optional[torch.Tensor] = None,
             mask: Optional[torch.Tensor] = None, strength: float = 1.0, generator: Optional[torch.Generator] = None,
             on_step: Optional[StepCallback] = None, background: Optional[torch.Tensor] = None) -> EditResult:
        """Check the inputs, run the edit, and keep the background outside a caller's mask."""
        request = EditRequest.checked(images, instruction, conditioning, mask, strength, generator, on_step, background)
        return keep_background(self.run(request), request)

    @staticmethod
    def check_prompt(instruction: str) -> None:
        """EditorError (one line) unless this editor can act on `instruction`; a non-empty string by default."""
        check_instruction(instruction)


def keep_background(result: EditResult, request: EditRequest) -> EditResult:
    """When the caller gave a mask: outside the region the editor reports it changed (the result's mask, else the
    caller's) the images are the request's background, bit for bit (any editor, plug-ins included). Without a
    mask the editor's own composite stands (a global edit, ViMAEdit's official no-composite run)."""
    if request.mask is not None:
        allowed = (result.mask if result.mask is not None else request.mask).to(result.images.device)
        result.images = torch.where(allowed[:, None], result.images, request.background.to(result.images))
        result.mask = allowed
    return result


def check_prompt(editor, instruction: str) -> None:
    """One EditorError line when `editor` (an editor or its class) can't act on `instruction`, before any work is
    done with it."""
    editor.check_prompt(instruction)


def editor_class(spec: str, flag: str = "") -> type:
    """The editor class a registered name or an import path `package.module:Class` names (a plug-in is imported,
    no model loads); one EditorError line, naming `flag`, when it is none or not an `Editor`."""
    cls = resolve(EDITORS, spec, "editor", flag)
    if not (isinstance(cls, type) and issubclass(cls, Editor)):
        raise EditorError(f"editor {spec!r} lacks relevance()/edit(): derive it from nerf_edit.editing.Editor and "
                          f"implement relevance() and run(request)")
    return cls


def check_edit_settings(spec: str, config: EditorConfig, prefix: str = "--", editor_flag: str = "--editor",
                        check_models: bool = True, model_flag: Optional[str] = None) -> type:
    """A command's editor and its settings, checked before anything loads: the class `spec` names (returned) and
    every setting it reads, each named by its flag (`nerf-edit-image --tau`, `ns-train wys
    --pipeline.editing.tau`)."""
    cls = editor_class(spec, editor_flag)
    if config.localizer != "auto" and not cls.takes_localizer:
        raise EditorError(f"editor {spec!r} does not take {prefix}localizer {config.localizer}: use {editor_flag} "
                          f"relevance or zone, or leave the localizer on auto")
    cls.check_settings(config, prefix, check_models, model_flag)
    return cls


def make_editor(spec: str, config: Optional[EditorConfig] = None) -> Editor:
    """The editor a registered name or import path names, built from `config` (default: EditorConfig())."""
    return editor_class(spec)(config if config is not None else EditorConfig())
