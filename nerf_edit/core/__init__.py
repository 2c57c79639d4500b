"""The functional core, importing no model and no editing system: the denoising loop and its step hooks, masks,
relevance maths, input checks, image I/O, stage timing and progress reporting."""
