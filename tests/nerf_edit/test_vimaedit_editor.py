"""ViMAEdit's editor, attention control and localiser on tiny random-weight models (CPU)."""

from dataclasses import replace

import pytest
import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.config.vimaedit import ViMAEditConfig
from nerf_edit.errors import EditorError, ModelUnavailableError
from nerf_edit.vimaedit.attention import VIMAEDIT_LAYOUT, AttentionControl, attention_control
from nerf_edit.vimaedit.editor import ViMAEditEditor
from nerf_edit.vimaedit.localizer import ViMAEditLocalizer, content_words
from nerf_edit.vimaedit.models import load_vimaedit_models

TINY = ViMAEditConfig(model="tiny", ip_adapter="tiny", clip_model="tiny", source_prompt="a red ball",
                      blend_words="red blue", steps=10)


@pytest.fixture(scope="module")
def tiny_models():
    return load_vimaedit_models(TINY, "cpu")


def make_editor(models, **changes):
    config = EditorConfig(model="tiny", device="cpu")
    config.vimaedit = replace(TINY, **changes)
    return ViMAEditEditor(config, models=models)


def image(seed=0, size=64):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, size, size, generator=generator)


def unet_inputs(models, prompts=("a red ball", "a blue ball")):
    tokens = models.tokenizer(["", "", *prompts], padding="max_length", max_length=77, return_tensors="pt").input_ids
    context = models.text_encoder(tokens)[0]
    torch.manual_seed(0)
    latents = torch.randn(4, 4, 8, 8)
    embeds = torch.randn(4, 1, models.unet.encoder_hid_proj.image_projection_layers[0].image_embeds.in_features)
    return latents, context, {"image_embeds": [embeds]}


class AlwaysExplicit(AttentionControl):
    def needs_probabilities(self, is_cross, cells, has_image_prompt):
        return True


@torch.no_grad()
def test_explicit_attention_equals_diffusers_processors_with_ip_adapter(tiny_models):
    latents, context, added = unet_inputs(tiny_models)
    reference = tiny_models.unet(latents, 500, encoder_hidden_states=context, added_cond_kwargs=added).sample
    control = AlwaysExplicit(VIMAEDIT_LAYOUT, (8, 8))  # no P2P windows, no recording: plain maths, explicitly
    with attention_control(tiny_models.unet, control):
        explicit = tiny_models.unet(latents, 500, encoder_hidden_states=context, added_cond_kwargs=added).sample
    torch.testing.assert_close(explicit, reference, rtol=1e-4, atol=1e-5)
    restored = tiny_models.unet(latents, 500, encoder_hidden_states=context, added_cond_kwargs=added).sample
    torch.testing.assert_close(restored, reference, rtol=0, atol=0)  # processors are back


@torch.no_grad()
def test_p2p_self_injection_and_cross_refinement_in_recorded_maps(tiny_models):
    from nerf_edit.vimaedit import ops as vimaedit

    latents, context, added = unet_inputs(tiny_models)
    ids = tiny_models.tokenizer(["a red ball", "a blue big ball"]).input_ids
    mapper, alphas = vimaedit.refinement_mapper(ids[0], ids[1], 77)
    control = AttentionControl(VIMAEDIT_LAYOUT, (8, 8), record_cross_factor=4, record_self_factor=2, self_steps=1,
                               cross_steps=1, image_steps=1, mapper=mapper, alphas=alphas)
    context[3] = tiny_models.text_encoder(tiny_models.tokenizer(["a blue big ball"], padding="max_length",
                                                                  max_length=77, return_tensors="pt").input_ids)[0][0]
    with attention_control(tiny_models.unet, control):
        tiny_models.unet(latents, 500, encoder_hidden_states=context, added_cond_kwargs=added)
        cross, self_map = control.pop_step()
        control.step = 1  # windows closed: the branches' maps are their own
        tiny_models.unet(latents, 500, encoder_hidden_states=context, added_cond_kwargs=added)
        free_cross, free_self = control.pop_step()
    assert len(cross) == 5 and self_map.shape == (2, 16, 16)  # SD-1.5's 2 + 3 layers at latent/4; latent/2 grid
    torch.testing.assert_close(self_map[1], self_map[0], rtol=0, atol=0)  # target's self-attention = source's
    assert (free_self[1] - free_self[0]).abs().max() > 1e-4
    shared = alphas[:77].bool()
    for layer in cross:  # shared tokens: the source's attention at the aligned token ("big" keeps its own)
        torch.testing.assert_close(layer[1][:, shared], layer[0][:, mapper[shared]], rtol=1e-5, atol=1e-6)
    assert (free_cross[0][1][:, shared] - free_cross[0][0][:, mapper[shared]]).abs().max() > 1e-4


@torch.no_grad()
def test_same_prompts_reproduce_the_input_latents(tiny_models):
    editor = make_editor(tiny_models, source_prompt="a red ball", blend_words="red", target_guidance_scale=7.5,
                         source_guidance_scale=7.5, composite=False)
    result = editor.edit(image(), "a red ball", generator=torch.Generator().manual_seed(0))
    assert result.critical_region.any()  # the variance rule was active
    torch.testing.assert_close(result.latents, result.x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(result.source_latents, result.x0, rtol=1e-4, atol=1e-4)
    decoded = ((tiny_models.vae.decode(result.x0 / tiny_models.vae.config.scaling_factor).sample + 1) / 2)
    # latents within 1e-4 decode within half an 8-bit step (the VAE's decoder amplifies float noise ~10x)
    torch.testing.assert_close(result.images, decoded.clamp(0, 1), rtol=1e-3, atol=0.5 / 255)


@torch.no_grad()
def test_pixels_outside_the_final_mask_are_the_background_exactly(tiny_models):
    editor = make_editor(tiny_models)
    images, background = image(0), image(1)
    result = editor.edit(images, "a blue ball", generator=torch.Generator().manual_seed(0), background=background)
    assert 0 < result.mask.float().mean() < 1
    outside = (~result.mask)[:, None].expand_as(images)
    assert torch.equal(result.images[outside], background[outside])
    assert result.relevance.shape == (1, 64, 64) and 0 <= float(result.relevance.min()) and float(result.relevance.max()) == 1
    given = torch.zeros(1, 64, 64, dtype=torch.bool)
    given[:, 8:40, 16:48] = True  # a caller's mask replaces the grounding mask
    result = editor.edit(images, "a blue ball", mask=given, generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.mask, given) and torch.equal(result.images[:, :, ~given[0]], images[:, :, ~given[0]])


@torch.no_grad()
@pytest.mark.parametrize("change", [dict(image_guidance=False), dict(iterative_grounding=False),
                                    dict(variance="zero"), dict(ip_ordering="official"), dict(prompt_to_prompt=False)])
def test_each_component_switch_changes_the_edit(tiny_models, change):
    images = image()
    baseline = make_editor(tiny_models, composite=False).edit(images, "a blue ball", generator=torch.Generator().manual_seed(0))
    models = tiny_models if change.get("image_guidance", True) else load_vimaedit_models(replace(TINY, **change), "cpu")
    switched = make_editor(models, composite=False, **change).edit(images, "a blue ball",
                                                                    generator=torch.Generator().manual_seed(0))
    assert (switched.images - baseline.images).abs().max() > 1e-4
    if "image_guidance" in change:
        assert models.unet.encoder_hid_proj is None  # no IP-Adapter loaded


def test_bad_input_is_one_line(tiny_models):
    editor = make_editor(tiny_models, blend_words="cat dog")
    with pytest.raises(EditorError, match="not in the prompts"):
        editor.edit(image(), "a blue ball")
    with pytest.raises(EditorError, match="target prompt is empty"):
        editor.edit_prompts(image(), "a ball", " ")
    config = EditorConfig(model="tiny", device="cpu")
    config.vimaedit = replace(TINY, blend_words="a b c")
    with pytest.raises(Exception, match="more than two words"):
        ViMAEditEditor(config, models=tiny_models)


def test_models_load_from_folders_like_the_hub_layout(tmp_path, tiny_models):
    from nerf_edit.models.tiny import write_tiny_vimaedit_models

    paths = write_tiny_vimaedit_models(tmp_path)
    loaded = load_vimaedit_models(replace(TINY, **paths), "cpu")
    assert any("IPAdapter" in type(p).__name__ for p in loaded.unet.attn_processors.values())
    images = image()
    from_folders = make_editor(loaded).edit(images, "a blue ball", generator=torch.Generator().manual_seed(0))
    in_memory = make_editor(tiny_models).edit(images, "a blue ball", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(from_folders.images, in_memory.images, rtol=1e-4, atol=1e-4)


def test_missing_models_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for field in ("model", "ip_adapter", "clip_model"):
        with pytest.raises(ModelUnavailableError) as error:
            load_vimaedit_models(replace(TINY, **{field: "nobody/no-such-model"}), "cpu")
        assert "\n" not in str(error.value) and "no-such-model" in str(error.value)
    with pytest.raises(ModelUnavailableError, match="is not a directory"):
        load_vimaedit_models(replace(TINY, model=str(tmp_path / "missing")), "cpu")


def test_localiser_on_ip2p_attention(tiny_ip2p):
    config = EditorConfig(model="tiny", device="cpu", steps=5)
    localizer = ViMAEditLocalizer(config, tiny_ip2p)
    found = localizer.localize(image(size=64).repeat(2, 1, 1, 1), "turn the ball blue",
                               generator=torch.Generator().manual_seed(0))
    assert found.mask.shape == found.soft.shape == (2, 64, 64)
    assert torch.equal(found.mask, found.soft > 0.5) and float(found.soft.max()) == 1.0 and float(found.soft.min()) == 0.0
    assert content_words("turn the ball blue") == ("ball", "blue")
    config.vimaedit = replace(TINY, blend_words="cube")
    with pytest.raises(EditorError, match="not in the instruction"):
        ViMAEditLocalizer(config, tiny_ip2p).localize(image(), "turn the ball blue")
