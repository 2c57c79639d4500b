"""Step hooks by import path (`EditorConfig.step_hooks`): built per edit, called once per scheduler step, before the
mask's blend, in every IP2P loop (WYS's edit, ZONE's fused edit); a bad path stops before any model loads."""

import sys
from pathlib import Path

import pytest
import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.config.zone import ZoneConfig
from nerf_edit.errors import EditorError
from nerf_edit.wys.editor import RelevanceGuidedEditor
from nerf_edit.zone.editor import ZoneEditor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "methods"))
import toy_hook  # noqa: E402

INSTRUCTION = "turn the ball blue"


@pytest.fixture(autouse=True)
def fresh_hook(monkeypatch):
    monkeypatch.setattr(toy_hook, "CALLS", [])
    monkeypatch.setattr(toy_hook, "SHIFT", 0.0)


def test_a_hook_runs_once_per_step_and_is_built_per_edit(tiny_ip2p):
    editor = RelevanceGuidedEditor(EditorConfig(model="tiny", steps=3, step_hooks=("toy_hook:CountingHook",)),
                                   ip2p=tiny_ip2p)
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    editor.edit(images, INSTRUCTION, generator=torch.Generator().manual_seed(0))
    editor.edit(images, INSTRUCTION, generator=torch.Generator().manual_seed(0))
    assert [index for index, _ in toy_hook.CALLS] == [0, 1, 2, 0, 1, 2]
    assert len({instance for _, instance in toy_hook.CALLS}) == 2  # a new instance for each edit


def test_a_hook_acts_inside_the_mask_only(tiny_ip2p, monkeypatch):
    """The mask's blend runs after the plug-in: its latent shift changes the edit inside the mask, and outside it
    the result is still the input, bit for bit."""
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[:, 8:24, 8:24] = True

    def edit(step_hooks):
        editor = RelevanceGuidedEditor(EditorConfig(model="tiny", steps=3, step_hooks=step_hooks), ip2p=tiny_ip2p)
        return editor.edit(images, INSTRUCTION, mask=mask, generator=torch.Generator().manual_seed(0)).images

    plain = edit(())
    monkeypatch.setattr(toy_hook, "SHIFT", 2.0)
    shifted = edit(("toy_hook:CountingHook",))
    inside = mask[:, None].expand_as(images)
    assert torch.equal(shifted[~inside], images[~inside])
    assert (shifted[inside] - plain[inside]).abs().max() > 0.05


def test_zones_fused_edit_runs_the_hook_too(tiny_ip2p):
    settings = ZoneConfig(fusion_model="none", segmenter="none")
    editor = ZoneEditor(EditorConfig(model="tiny", steps=2, zone=settings, step_hooks=("toy_hook:CountingHook",)),
                        ip2p=tiny_ip2p)
    editor.edit(torch.rand(1, 3, 32, 32), INSTRUCTION, generator=torch.Generator().manual_seed(0))
    assert [index for index, _ in toy_hook.CALLS] == [0, 1]


def test_a_bad_hook_path_stops_before_any_model_loads(monkeypatch):
    from nerf_edit.models.ip2p import InstructPix2Pix

    monkeypatch.setattr(InstructPix2Pix, "from_pretrained", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(EditorError, match="cannot import --step-hooks 'toy_hook:Nothing'"):
        RelevanceGuidedEditor(EditorConfig(model="tiny", step_hooks=("toy_hook:Nothing",)))
