"""Training an embedding network with triplet loss and gradient accumulation.

The library (sampler, losses, accumulation, freezing, augmentation, checkpoints) is separate from
the trainer loop (``trainer.py``) and the CLI command (``facesys train``), as in open_clip.
"""
