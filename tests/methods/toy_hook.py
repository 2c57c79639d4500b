"""A user's step hook, plugged in by import path (`--step-hooks toy_hook:CountingHook`): it counts the scheduler
steps it sees and, with `SHIFT` set, moves the latents, so a test can see it acted where the mask allows."""

import torch

# (step index, the edit's hook instance), in order; the instance itself, not its id(): a finished edit's hook is
# freed, and the next one may be given the same address (ids of dead objects repeat)
CALLS: list = []
SHIFT = 0.0


class CountingHook:
    def __init__(self, config, ip2p):
        self.config, self.ip2p = config, ip2p

    def __call__(self, step) -> torch.Tensor:
        CALLS.append((step.index, self))
        return step.latents + SHIFT
