"""mtl_diffusion: diffusion-model training as multi-task learning over noise levels."""

__version__ = "0.1.0"
