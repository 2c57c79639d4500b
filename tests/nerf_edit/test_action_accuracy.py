"""The Diffusion-Classifier reading of action accuracy, checked with oracle denoisers whose answer is known, and the
nerf-edit-eval-action command on the tiny IP2P."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nerf_edit.action.accuracy import action_accuracy, encode_pair_images, encode_prompts
from nerf_edit.action.data import load_pair_image, read_pairs
from nerf_edit.action.losses import training_noise_scheduler
from nerf_edit_scripts.make_action_pairs import all_instructions, make_action_pairs

RESOLUTION = 32


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_action_pairs(tmp_path_factory.mktemp("pairs"), count=7, heldout=7, size=RESOLUTION, seed=2)


class OracleUNet(torch.nn.Module):
    """Predicts ε exactly from the true after-latent when told the pair's true instruction (`truthful`), or when
    told any *other* instruction (not truthful); otherwise predicts as if nothing happened (x̂0 = the before
    latent). Pairs are recognised by their image-condition latent."""

    def __init__(self, pipe, heldout, truthful: bool):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the module a device and dtype
        self.truthful = truthful
        self.alphas = training_noise_scheduler(pipe.scheduler.config).alphas_cumprod
        self.known = []
        for pair in heldout:
            before = load_pair_image(pair.before, RESOLUTION)[None]
            after = load_pair_image(pair.after, RESOLUTION)[None]
            image_latents, latents = encode_pair_images(pipe.vae, before, after)
            text = encode_prompts(pipe.tokenizer, pipe.text_encoder, [pair.instruction], "cpu")
            scale = pipe.vae.config.scaling_factor
            self.known.append((image_latents[0], latents[0], image_latents[0] * scale, text[0]))

    @property
    def device(self):
        return self.anchor.device

    @property
    def dtype(self):
        return self.anchor.dtype

    def forward(self, sample, timesteps, text):
        predictions = []
        for x, t, embedding in zip(sample, timesteps, text):
            noisy, condition = x[:4], x[4:]
            known = min(self.known, key=lambda item: (item[0] - condition).abs().sum().item())
            is_true = torch.allclose(embedding, known[3], atol=1e-5)
            x0 = known[1] if is_true == self.truthful else known[2]
            alpha = self.alphas[int(t)]
            predictions.append((noisy - alpha.sqrt() * x0) / (1 - alpha).sqrt())
        return SimpleNamespace(sample=torch.stack(predictions))


def test_reading_picks_the_instruction_that_explains_the_after_image(tiny_pipe, pairs):
    heldout = read_pairs(pairs, "heldout")
    oracle = SimpleNamespace(**{**tiny_pipe.components, "unet": OracleUNet(tiny_pipe, heldout, truthful=True)})
    result = action_accuracy(oracle, heldout, all_instructions(), negatives=3, draws=4, resolution=RESOLUTION)
    assert result.accuracy == 1.0 and result.chance == 0.25
    assert all(choice["chosen"] == choice["instruction"] for choice in result.choices)
    liar = SimpleNamespace(**{**tiny_pipe.components, "unet": OracleUNet(tiny_pipe, heldout, truthful=False)})
    assert action_accuracy(liar, heldout, all_instructions(), 3, 4, RESOLUTION).accuracy == 0.0


def test_text_blind_model_never_counts_as_correct(tiny_pipe, pairs):
    # The tiny UNet with every text made equal: all candidates tie, and a tie is not a correct answer.
    heldout = read_pairs(pairs, "heldout")
    unet = tiny_pipe.unet

    class Blind(torch.nn.Module):
        device, dtype = unet.device, unet.dtype

        def forward(self, sample, timesteps, text):
            return unet(sample, timesteps, torch.zeros_like(text))

    blind = SimpleNamespace(**{**tiny_pipe.components, "unet": Blind()})
    assert action_accuracy(blind, heldout, all_instructions(), 3, 2, RESOLUTION).accuracy == 0.0


def test_eval_action_command_reports_each_model(pairs, tmp_path):
    from nerf_edit_scripts.evaluate_action import EvaluateAction

    results = EvaluateAction(data=pairs, models=["tiny", "tiny:1"], negatives=2, draws=3, resolution=RESOLUTION,
                             output=tmp_path / "acc.json").main()
    saved = json.loads((tmp_path / "acc.json").read_text())
    assert saved == results and set(saved) == {"tiny", "tiny:1"}
    for summary in saved.values():
        assert summary["pairs"] == 7 and summary["chance"] == pytest.approx(1 / 3)
        assert summary["correct"] == round(summary["action_accuracy"] * 7)


def test_eval_action_edit_metrics_are_those_of_the_written_edits(pairs, tmp_path):
    """--edit-metrics: each model edits the held-out before images; the reported means equal PSNR / L1 / SSIM
    recomputed here from the written PNGs against the after images (numpy PSNR, scikit-image SSIM), and the same
    model twice gives the same row and the same files (seeds per pair, not per model)."""
    from skimage.metrics import structural_similarity

    from nerf_edit.core.io import load_image
    from nerf_edit.eval.metrics import ClipEmbedder
    from nerf_edit.models.tiny import build_tiny_ip2p_pipeline
    from nerf_edit_scripts.evaluate_action import EvaluateAction

    copy = tmp_path / "tiny_copy"  # the weights of `tiny`, saved: another name, the same model
    build_tiny_ip2p_pipeline().save_pretrained(copy)
    results = EvaluateAction(data=pairs, models=["tiny", str(copy), "tiny:1"], negatives=2, draws=2,
                             resolution=RESOLUTION, edit_metrics=True, clip_model="tiny", edit_steps=2,
                             output=tmp_path / "acc.json", edits_dir=tmp_path / "edits").main()
    assert json.loads((tmp_path / "acc.json").read_text()) == results
    heldout = read_pairs(pairs, "heldout")
    folders = sorted((tmp_path / "edits").iterdir())
    assert [f.name[:3] for f in folders] == ["00_", "01_", "02_"] and folders[2].name == "02_tiny_1"
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == [f"{i:05d}.png" for i in range(len(heldout))]
    # Identical models: identical edits and identical rows (seeds per pair, not per model).
    for a, b in zip(sorted(folders[0].iterdir()), sorted(folders[1].iterdir())):
        assert a.read_bytes() == b.read_bytes()
    same = {k: v for k, v in results[str(copy)].items() if k != "edits"}
    assert same == {k: v for k, v in results["tiny"].items() if k != "edits"}
    for model, folder in (("tiny", folders[0]), ("tiny:1", folders[2])):
        psnr, l1, ssim = [], [], []
        for index, pair in enumerate(heldout):
            edited = load_image(folder / f"{index:05d}.png").permute(1, 2, 0).numpy().astype(np.float64)
            after = np.round((load_pair_image(pair.after, RESOLUTION).permute(1, 2, 0).numpy() + 1) / 2 * 255) / 255
            psnr.append(10 * np.log10(1 / np.mean((edited - after) ** 2)))
            l1.append(np.mean(np.abs(edited - after)))
            ssim.append(structural_similarity(edited, after, channel_axis=2, data_range=1.0, gaussian_weights=True,
                                              sigma=1.5, use_sample_covariance=False))
        row = results[model]
        assert row["edits"] == str(folder)
        assert row["psnr_to_after"] == pytest.approx(np.mean(psnr), abs=1e-3)
        assert row["l1_to_after"] == pytest.approx(np.mean(l1), abs=1e-5)
        assert row["ssim_to_after"] == pytest.approx(np.mean(ssim), abs=2e-3)
        # CLIP scores, recomputed from the files with the same (tiny) CLIP.
        edited = torch.stack([load_image(folder / f"{i:05d}.png") for i in range(len(heldout))])
        before = torch.stack([torch.round((load_pair_image(p.before, RESOLUTION) + 1) / 2 * 255) / 255 for p in heldout])
        clip = ClipEmbedder("tiny")
        edited_emb, before_emb = clip.images(edited), clip.images(before)
        texts = clip.texts([p.instruction for p in heldout])
        assert row["clip_image_to_before"] == pytest.approx(
            torch.nn.functional.cosine_similarity(edited_emb, before_emb).mean().item(), abs=1e-5)
        assert row["clip_text_image"] == pytest.approx(
            torch.nn.functional.cosine_similarity(edited_emb, texts).mean().item(), abs=1e-5)
        assert -1 <= row["clip_direction_to_after"] <= 1
    # Different weights, different edits: the rows are not copies of each other.
    assert results["tiny"]["psnr_to_after"] != pytest.approx(results["tiny:1"]["psnr_to_after"], abs=1e-3)
