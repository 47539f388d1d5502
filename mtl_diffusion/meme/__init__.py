"""MEME (Lee, Kim, Go et al., AAAI 2024): one expert denoiser per timestep interval, each with
its own split of channels between convolution (high-frequency) and attention on pooled tokens
(low-frequency), trained with a soft interval assignment and sampled each on its interval.

Config-free (usable in your own loop): blocks, the expert family, the multi-expert denoiser,
soft interval assignment, the engine batch and the frequency measurements. Training through
the project's Trainer lives in ``mtl_diffusion.meme.training`` (it needs a Config).
"""

from mtl_diffusion.meme.assignment import (
    SoftAssignment,
    SoftIntervalTimesteps,
    own_interval_probabilities,
)
from mtl_diffusion.meme.batch import soft_denoising_batch
from mtl_diffusion.meme.blocks import (
    ConvBlock,
    MixedBlock,
    PooledAttentionBlock,
    attention_channels,
)
from mtl_diffusion.meme.expert import ExpertBlock, MixedUNet
from mtl_diffusion.meme.multi_expert import (
    MultiExpertDenoiser,
    default_ratios,
    mixed_experts,
)
from mtl_diffusion.meme.spectrum import (
    RadialSpectrum,
    correction_spectrum,
    frequency_response,
    radial_bins,
    radial_power_spectrum,
)

__all__ = [
    "ConvBlock",
    "ExpertBlock",
    "MixedBlock",
    "MixedUNet",
    "MultiExpertDenoiser",
    "PooledAttentionBlock",
    "RadialSpectrum",
    "SoftAssignment",
    "SoftIntervalTimesteps",
    "attention_channels",
    "correction_spectrum",
    "default_ratios",
    "frequency_response",
    "mixed_experts",
    "own_interval_probabilities",
    "radial_bins",
    "radial_power_spectrum",
    "soft_denoising_batch",
]
