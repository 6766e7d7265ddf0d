"""ecgcore.models: the PyTorch layer (backbones, heads, checkpoint loading).

The only part of ecgcore that needs torch.
"""
