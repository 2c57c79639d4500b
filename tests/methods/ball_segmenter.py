"""A segmenter whose answer is known on the synthetic scene: the red ball and everything else."""

import torch
from oracle_editor import red_region


class BallSegmenter:
    def __init__(self):
        self.outputs = []

    def __call__(self, image):
        ball = red_region(image[None])[0]
        segments = torch.stack([ball, ~ball])
        self.outputs.append(segments)
        return segments
