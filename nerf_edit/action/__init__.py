"""EditAction (Trusca et al., arXiv 2412.04558): action-contrastive fine-tuning of InstructPix2Pix.

`losses` (L_static, L_action, L_reg, cross-attention freezing), `data` (the JSONL pair index, synthetic and video
builders live in scripts/ and `videos`), `accuracy` (the Diffusion-Classifier reading of action accuracy),
`train` (the accelerate trainer).
"""
