"""Cross-attention capture: same outputs, only cross-attention layers recorded, processors restored."""

from collections import Counter

import torch

from nerf_edit.config.zone import ATTENTION_BRANCHES, ZoneConfig
from nerf_edit.models.attention import CrossAttentionRecorder, cross_attention_layers, record_cross_attention


def processor_types(unet):
    """How many layers use each processor class."""
    return dict(Counter(type(processor).__name__ for processor in unet.attn_processors.values()))


def guided_call(ip2p, seed=0):
    generator = torch.Generator().manual_seed(seed)
    noisy = torch.randn(2, 4, 8, 6, generator=generator)
    image_latents = torch.randn(2, 4, 8, 6, generator=generator)
    return ip2p.predict_guided(noisy, torch.tensor(500), image_latents, "turn the ball blue")


def test_capture_leaves_the_output_unchanged_and_restores_processors(tiny_ip2p):
    unet = tiny_ip2p.unet
    before = dict(unet.attn_processors)
    plain = guided_call(tiny_ip2p)
    recorder = CrossAttentionRecorder(branches=3, branch=0, keep_steps=True)
    with record_cross_attention(unet, recorder):
        during = processor_types(unet)
        captured = guided_call(tiny_ip2p)
    torch.testing.assert_close(captured, plain, rtol=1e-5, atol=1e-5)
    assert unet.attn_processors == before  # the very same processor objects are back
    cross = cross_attention_layers(unet)
    assert cross and all(name.endswith("attn2") for name in cross)
    wanted = [name for name in cross if not name.startswith("mid_block")]
    # self-attention (and the skipped mid block) stay on the fast path while recording
    fast = {type(p).__name__ for p in before.values()}
    assert fast == {"AttnProcessor2_0"}
    assert during == {"AttnProcessor2_0": len(before) - len(wanted), "RecordingCrossAttnProcessor": len(wanted)}
    assert sorted(recorder.maps[0]) == sorted(wanted)


def test_recorded_maps_are_probabilities_of_the_text_branch_per_step(tiny_ip2p):
    recorder = CrossAttentionRecorder(branches=3, branch=0, keep_steps=True)
    with record_cross_attention(tiny_ip2p.unet, recorder):
        for step in range(3):
            guided_call(tiny_ip2p, seed=step)
            recorder.next_step()
    assert recorder.num_steps == 3
    for step in recorder.maps[:3]:
        for probs in step.values():
            assert probs.shape[0] == 2 and probs.shape[-1] == 77  # the batch of 2, not 3 x 2
            torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:2]), rtol=1e-4, atol=1e-4)
    average = recorder.average((64, 48))
    assert average.shape[0] == 2 and average.shape[-1] == 77
    coarsest = [layer for layer, probs in recorder.maps[0].items() if probs.shape[1] == 8 * 6 // 4]
    by_hand = torch.stack([step[layer] for step in recorder.maps[:3] for layer in coarsest]).mean(0)
    torch.testing.assert_close(average, by_hand.view(2, 4, 3, 77))  # the mean over steps and coarsest layers
    torch.testing.assert_close(average.sum(-1), torch.ones(average.shape[:3]), rtol=1e-4, atol=1e-4)


def test_branch_selection_matches_a_text_only_call(tiny_ip2p):
    """The kept branch is the instruction-conditioned one: same maps as a UNet call with that branch alone."""
    generator = torch.Generator().manual_seed(3)
    noisy = torch.randn(1, 4, 8, 8, generator=generator)
    image_latents = torch.randn(1, 4, 8, 8, generator=generator)
    guided = CrossAttentionRecorder(branches=3, branch=0, keep_steps=True)
    with record_cross_attention(tiny_ip2p.unet, guided):
        tiny_ip2p.predict_guided(noisy, torch.tensor(300), image_latents, "make it red")
    alone = CrossAttentionRecorder(branches=1, branch=0, keep_steps=True)
    text = tiny_ip2p.embed_text("make it red")
    with record_cross_attention(tiny_ip2p.unet, alone):
        tiny_ip2p.unet(torch.cat([noisy, image_latents], 1), torch.tensor(300), encoder_hidden_states=text)
    for layer, probs in guided.maps[0].items():
        torch.testing.assert_close(probs, alone.maps[0][layer], rtol=1e-4, atol=1e-5)


def test_null_text_branches_are_averaged_as_the_official_zone_reads_them(tiny_ip2p):
    """lsl001006/ZONE null_text_w_ptp.py ~226 hands `attn[h // 3:]` of IP2P's [text, image-only, null] batch to its
    store, and msk_from_attn.py ~15-25 averages what it stored over its first axis (heads of both branches): the
    mean of the image-only and the null branch's head-averaged maps, which is what ZONE's default keeps."""
    generator = torch.Generator().manual_seed(4)
    noisy = torch.randn(1, 4, 8, 8, generator=generator)
    image_latents = torch.randn(1, 4, 8, 8, generator=generator)
    recorders = {kept: CrossAttentionRecorder(branches=3, branch=kept, keep_steps=True) for kept in (1, 2, (1, 2), 0)}
    for recorder in recorders.values():
        with record_cross_attention(tiny_ip2p.unet, recorder):
            tiny_ip2p.predict_guided(noisy, torch.tensor(300), image_latents, "make it red")
    assert ZoneConfig().attention_branch == "null-text" and ATTENTION_BRANCHES["null-text"] == (1, 2)
    for layer, both in recorders[(1, 2)].maps[0].items():
        official = torch.cat([recorders[1].maps[0][layer], recorders[2].maps[0][layer]]).mean(0, keepdim=True)
        torch.testing.assert_close(both, official, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(both, recorders[0].maps[0][layer], rtol=1e-3, atol=1e-4)  # not the text branch
