"""The edit worker of `--pipeline.overlap-edits`: dataset updates run on one thread beside training (on CUDA on
their own stream), one job of K views at a time."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch


class EditWorker:
    """One worker thread for the editor; on CUDA it runs on its own stream, synchronised with the training stream
    at submission (the renders are ready) and at the result (the edits are ready)."""

    def __init__(self, device: torch.device):
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wys-edit")
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def submit(self, function, job) -> Future:
        if self.stream is None:
            return self.executor.submit(function, job)
        ready = torch.cuda.current_stream(self.stream.device).record_event()

        def on_stream():
            with torch.cuda.stream(self.stream):
                self.stream.wait_event(ready)
                return function(job)

        return self.executor.submit(on_stream)

    def result(self, future: Future):
        job = future.result()
        if self.stream is not None:
            torch.cuda.current_stream(self.stream.device).wait_stream(self.stream)
        return job
