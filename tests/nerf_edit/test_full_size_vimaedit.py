"""Conformance tier: ViMAEdit's editor on the real architectures (SD-1.5's UNet with IP-Adapter SD-1.5 loaded by
diffusers, CLIP ViT-H/14; random weights) on the CPU at 64²: the same properties as its tiny test, and both branches
against diffusers' own StableDiffusionPipeline on the same networks.
Its own file, so that the full-size IP2P of test_full_size.py is freed first (the conformance tests share one
pytest worker: tests/conftest.py)."""

import pytest
import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.config.vimaedit import ViMAEditConfig
from nerf_edit.models import full_size
from nerf_edit.vimaedit.editor import ViMAEditEditor
from nerf_edit.vimaedit.models import ViMAEditModels, vimaedit_ddim_scheduler

pytestmark = pytest.mark.conformance
# On the CPU at 64² here; on a CUDA GPU at 512² (marker `gpu`: skipped without one).
SETUPS = [pytest.param(("cpu", 64), id="cpu-64"), pytest.param(("cuda", 512), id="cuda-512", marks=pytest.mark.gpu)]


def parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module", params=SETUPS)
def setup(request):
    """(device, image size)"""
    return request.param


@pytest.fixture(scope="module")
def sd15(setup):
    """SD-1.5 with IP-Adapter SD-1.5 (loaded by diffusers, scale 0.4 as ViMAEdit's) and CLIP ViT-H/14, random weights.
    -> (StableDiffusionPipeline, (CLIP, its tokenizer, its processor))"""
    device, _ = setup
    pipe = full_size.build_full_size_sd15_pipeline()
    assert 859e6 < parameters(pipe.unet) < 860e6  # SD-1.5's UNet: 859.52M
    pipe.load_ip_adapter(full_size.build_full_size_ip_adapter_weights(pipe.unet), subfolder="", weight_name="",
                         image_encoder_folder=None)
    pipe.set_ip_adapter_scale(ViMAEditConfig().ip_adapter_scale)
    projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert parameters(projection) == 3_150_336  # ip-adapter_sd15.bin's image_proj: 1024 -> 4 × 768, LayerNorm
    pipe.set_progress_bar_config(disable=True)
    clip, clip_tokenizer, clip_processor = full_size.build_full_size_clip_h14()
    return pipe.to(device), (clip.to(device).eval(), clip_tokenizer, clip_processor)


def vimaedit_models(sd15, device, scheduler) -> ViMAEditModels:
    pipe, (clip, clip_tokenizer, clip_processor) = sd15
    return ViMAEditModels(unet=pipe.unet, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                          scheduler=scheduler, clip=clip, clip_tokenizer=clip_tokenizer, clip_processor=clip_processor,
                          device=torch.device(device))


@torch.no_grad()
def test_vimaedit_on_sd15_with_ip_adapter_and_clip_h_keeps_everything_outside_the_mask(sd15, setup):
    device, size = setup
    settings = ViMAEditConfig(source_prompt="a red ball", blend_words="red blue", steps=2)
    models = vimaedit_models(sd15, device, vimaedit_ddim_scheduler(sd15[0].scheduler.config))
    config = EditorConfig(device=device)
    config.vimaedit = settings
    editor = ViMAEditEditor(config, models=models)

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(1, 3, size, size, generator=generator).to(device)
    background = torch.rand(1, 3, size, size, generator=generator).to(device)
    grounded = editor.edit(images, "a blue ball", generator=torch.Generator().manual_seed(0), background=background)
    assert grounded.mask.shape == (1, size, size) and grounded.relevance.shape == (1, size, size)
    outside = (~grounded.mask)[:, None].expand_as(images)
    assert torch.equal(grounded.images[outside], background[outside]) and torch.isfinite(grounded.images).all()

    given = torch.zeros(1, size, size, dtype=torch.bool, device=device)
    given[:, size // 8 : size * 5 // 8, size // 4 : size * 3 // 4] = True  # a caller's mask replaces the grounding
    result = editor.edit(images, "a blue ball", mask=given, generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.mask, given)
    assert torch.equal(result.images[:, :, ~given[0]], images[:, :, ~given[0]])
    assert (result.images[:, :, given[0]] != images[:, :, given[0]]).any()  # and it edited inside


@torch.no_grad()
def test_both_branches_are_diffusers_sd_pipeline_on_the_real_networks(sd15, setup):
    """One DDIM step from t = 501 (`leading` spacing with offset 501; ᾱ_prev = 1, DDIM's set_alpha_to_one, so a
    step's output is its predicted x̂0): ViMAEdit's source branch (source prompt, CFG 1, IP-Adapter e_s) and target
    branch (target prompt, CFG 7.5, IP-Adapter ê_t, zero embedding unconditional: the `paper` order) each predict what
    diffusers' StableDiffusionPipeline predicts on the same networks from the same x_T, given the same prompts and
    `ip_adapter_image_embeds`; the target's result is x0 + x̂0_tar − x̂0_src (InfEdit's correction, ViMAEdit Eq. 3)
    and the source branch reconstructs x0, the VAE mean latent of the input, exactly. One step keeps every P2P
    window empty (they start at step 0 and last a fraction of one step) and no blend words: no grounding."""
    from diffusers import DDIMScheduler

    from nerf_edit.models.clip import projected_features

    device, size = setup
    pipe, (clip, clip_tokenizer, clip_processor) = sd15
    source_prompt, target_prompt = "a red ball on a table", "a blue ball on a table"

    def one_step_ddim():
        """SD-1.5's DDIM, written out here: one step at t = 501, ending at ᾱ = 1."""
        return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                             steps_offset=501, clip_sample=False, set_alpha_to_one=True, timestep_spacing="leading")

    settings = ViMAEditConfig(source_prompt=source_prompt, steps=1, ip_ordering="paper", composite=False)
    config = EditorConfig(device=device)
    config.vimaedit = settings
    editor = ViMAEditEditor(config, models=vimaedit_models(sd15, device, one_step_ddim()))
    images = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(4)).to(device)
    result = editor.edit(images, target_prompt, generator=torch.Generator().manual_seed(5))

    # the reference's inputs: x0, the noise drawn first from the seed, x_T; e_s and ê_t = e_s + ‖e_s‖(t̂_t − t̂_s)
    x0 = pipe.vae.encode(images * 2 - 1).latent_dist.mean * pipe.vae.config.scaling_factor
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5)).to(device)
    scheduler = one_step_ddim()
    scheduler.set_timesteps(1)
    assert scheduler.timesteps.tolist() == [501]
    x_t = scheduler.add_noise(x0, noise, scheduler.timesteps)
    pixels = clip_processor(images=list(images.cpu()), return_tensors="pt", do_rescale=False).pixel_values
    e_s = projected_features(clip.get_image_features(pixel_values=pixels.to(device)))  # [1, 1024]
    tokens = clip_tokenizer([source_prompt, target_prompt], padding="max_length", max_length=77, truncation=True,
                            return_tensors="pt").input_ids.to(device)
    t_s, t_t = torch.nn.functional.normalize(projected_features(clip.get_text_features(input_ids=tokens)), dim=-1)
    e_t = e_s + e_s.norm() * (t_t - t_s)

    pipe.scheduler = one_step_ddim()  # set after construction: StableDiffusionPipeline's __init__ rewrites offsets
    common = dict(num_inference_steps=1, latents=x_t, height=size, width=size, output_type="latent")
    x0_source = pipe(source_prompt, guidance_scale=1.0, ip_adapter_image_embeds=[e_s[:, None]], **common).images
    x0_target = pipe(target_prompt, guidance_scale=7.5, negative_prompt="",
                     ip_adapter_image_embeds=[torch.cat([torch.zeros_like(e_s), e_t])[:, None]], **common).images
    assert (x0_target - x0_source).abs().max() > 0.05  # the two branches differ: the correction is tested
    torch.testing.assert_close(result.source_latents, x0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(result.x0, x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.latents, x0 + x0_target - x0_source, atol=2e-4, rtol=1e-4)
    decoded = pipe.image_processor.postprocess(
        pipe.vae.decode(result.latents / pipe.vae.config.scaling_factor).sample, output_type="pt")
    torch.testing.assert_close(result.images, decoded, atol=1e-5, rtol=1e-5)
