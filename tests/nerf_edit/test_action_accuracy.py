"""The Diffusion-Classifier reading of action accuracy, checked with oracle denoisers whose answer is known, and the
nerf-edit-eval-action command on the tiny IP2P."""

import json
from types import SimpleNamespace

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
