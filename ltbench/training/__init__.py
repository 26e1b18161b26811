"""What a run computes: models and their registry, losses, objectives, SAM, stored logits,
checkpoints and the epoch loop.
"""
