"""ZONE's official add/remove/change classifier: the authors' MLP checkpoint (shipped, see
ACTION_CLASSIFIER_NOTICE.md) on IP2P's CLIP text embedding, read out token-wise as their code does.

lsl001006/ZONE msk_from_attn.py ~104-145: `MLPClassifier` is fc1 (hidden size -> 128), ReLU, fc2 (128 -> 3),
applied to every one of the 77 token embeddings (`text_encoder(input_ids, attn_mask)[0]`, padded to 77);
`torch.max(outputs, 1)` takes, for each class, the token where its logit is highest, and `tensor2label` then
takes the class whose best token comes last (`argmax` over those three token indices), labels
{0: change, 1: add, 2: remove}.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import torch
from torch import nn

from nerf_edit.errors import EditorError

CHECKPOINT = Path(__file__).with_name("action_classifier.pth")
CHECKPOINT_SHA256 = "0c82b29fc1398ce2870382ef7b88efd3f241d2b45782e83d03d364279bd43b75"
OFFICIAL_LABELS = ("change", "add", "remove")  # msk_from_attn.py ~120: mapper {'0': CHANGE, '1': ADD, '2': REMOVE}
INPUT_SIZE = 768  # SD-1.5's (and IP2P's) CLIP ViT-L/14 text hidden size, what the checkpoint was trained on


class ActionMLP(nn.Module):
    """fc1 -> ReLU -> fc2, per token: [B, L, input_size] -> [B, L, 3] logits."""

    def __init__(self, input_size: int = INPUT_SIZE, hidden_size: int = 128, num_classes: int = 3):
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, num_classes)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(embeddings)))


def official_readout(logits: torch.Tensor) -> List[str]:
    """[B, L, 3] per-token logits -> one label per instruction: for each class the token of its highest logit,
    then the class whose token index is largest (the official `torch.max(outputs, 1)` + `tensor2label`)."""
    best_token = logits.argmax(1)  # [B, 3]
    return [OFFICIAL_LABELS[int(index)] for index in best_token.argmax(1)]


class OfficialActionClassifier:
    """instruction -> "add" | "remove" | "change", from IP2P's own tokenizer and text encoder (which must have the
    checkpoint's 768-wide hidden states)."""

    name = "official classifier (ZONE's checkpoint)"

    def __init__(self, tokenizer, text_encoder, checkpoint: Path = CHECKPOINT):
        hidden = int(text_encoder.config.hidden_size)
        if hidden != INPUT_SIZE:
            raise EditorError(f"ZONE's action classifier reads {INPUT_SIZE}-wide CLIP text embeddings but this "
                              f"model's text encoder gives {hidden}: use --zone.action rules (or auto)")
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.mlp = ActionMLP()
        self.mlp.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        self.mlp.eval()

    @torch.no_grad()
    def __call__(self, instruction: str) -> str:
        tokens = self.tokenizer(instruction, padding="max_length", truncation=True, max_length=77,
                                return_tensors="pt")
        device = self.text_encoder.device
        embeddings = self.text_encoder(tokens.input_ids.to(device), tokens.attention_mask.to(device))[0]  # [1, 77, 768]
        logits = self.mlp.to(device)(embeddings.float())  # [1, 77, 3]
        return official_readout(logits)[0]
