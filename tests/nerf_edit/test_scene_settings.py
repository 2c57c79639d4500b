"""The viewer's settings as one object: what the run starts with, and what an edit then uses."""

import dataclasses

import pytest

from nerf_edit.config.editor import EditorConfig
from nerf_edit.scene.settings import EditSettings


def test_the_run_starts_with_its_prompt_and_editor_settings_and_the_editor_takes_changes():
    editing = EditorConfig(guidance_scale=6.0, image_guidance_scale=1.5, tau=0.4)
    settings = EditSettings.of("turn the ball blue", editing)
    assert (settings.prompt, settings.guidance_scale, settings.image_guidance_scale, settings.tau, settings.paused) == \
        ("turn the ball blue", 6.0, 1.5, 0.4, False)
    changed = settings.replace(guidance_scale=9.5, tau=0.7)
    changed.apply_to(editing)
    assert (editing.guidance_scale, editing.image_guidance_scale, editing.tau) == (9.5, 1.5, 0.7)
    with pytest.raises(dataclasses.FrozenInstanceError):  # handed over whole: nobody changes it in place
        settings.tau = 0.9
