import torch
from diffusers import StableDiffusionInstructPix2PixPipeline
from transformers import CLIPTokenizer

from nerf_edit.models.tiny import build_tiny_ip2p_pipeline, build_tiny_tokenizer, bytes_to_unicode


def test_byte_table_covers_every_byte_once():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256


def test_tokenizer_is_a_real_clip_bpe_tokenizer():
    tokenizer = build_tiny_tokenizer()
    assert isinstance(tokenizer, CLIPTokenizer)
    assert tokenizer.model_max_length == 77
    ids = tokenizer("Turn the ball blue").input_ids
    # bos + one merged token per known word + eos; lower-cased like CLIP's normaliser
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.convert_ids_to_tokens(ids[1:-1]) == ["turn</w>", "the</w>", "ball</w>", "blue</w>"]
    # unknown words fall back to byte pieces, never to <unk>
    pieces = tokenizer("zq!").input_ids[1:-1]
    assert len(pieces) >= 2 and tokenizer.unk_token_id not in pieces
    padded = tokenizer("make it red", padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert padded.shape == (1, 77)


def test_pipeline_has_ip2p_architecture():
    pipe = build_tiny_ip2p_pipeline()
    assert pipe.unet.config.in_channels == 8 and pipe.unet.config.out_channels == 4
    assert pipe.vae_scale_factor == 8
    latents = pipe.vae.encode(torch.zeros(1, 3, 64, 48)).latent_dist.mode()
    assert latents.shape == (1, 4, 8, 6)
    assert pipe.text_encoder.config.vocab_size == len(pipe.tokenizer)
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = build_tiny_ip2p_pipeline(0), build_tiny_ip2p_pipeline(0), build_tiny_ip2p_pipeline(1)
    wa, wb, wc = (p.unet.conv_in.weight for p in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_save_pretrained_round_trip(tmp_path):
    pipe = build_tiny_ip2p_pipeline()
    pipe.save_pretrained(tmp_path)
    loaded = StableDiffusionInstructPix2PixPipeline.from_pretrained(tmp_path)
    assert loaded.tokenizer("make the cube red").input_ids == pipe.tokenizer("make the cube red").input_ids
    image = torch.rand(1, 3, 32, 32)
    outputs = []
    for p in (pipe, loaded):
        p.set_progress_bar_config(disable=True)
        generator = torch.Generator().manual_seed(0)
        outputs.append(p("make the cube red", image=image, num_inference_steps=2, generator=generator, output_type="pt").images)
    torch.testing.assert_close(outputs[0], outputs[1])
