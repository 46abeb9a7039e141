"""Model stage: diffusion maths, the two-stream network, losses, samplers and checkpoints."""
