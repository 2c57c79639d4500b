"""Evaluation: CLIP and background metrics of edits, and the PIE-Bench metrics."""
