"""The expert family: a small U-Net whose spatial mixing is done by mixed blocks.

Every block of :class:`MixedUNet` is a token mixer (:class:`~mtl_diffusion.meme.blocks.MixedBlock`,
a fraction ``ratio`` of its channels attention on pooled tokens, the rest convolution) followed
by a time-conditioned pointwise MLP (the U-Net ResBlock's layout with 1x1 convolutions), so the
ratio decides how the block mixes space. Down- and upsampling, the time embedding and the
zero-initialised output layer are the project U-Net's. ``forward(x, t)`` like every denoiser here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from mtl_diffusion.meme.blocks import MixedBlock, attention_channels, check_ratio
from mtl_diffusion.models.embedding import TimestepEmbedding
from mtl_diffusion.models.unet import Downsample, Stage, Upsample, unet_features, zero_init


class ExpertBlock(nn.Module):
    """[1x1 conv when channels change] -> MixedBlock -> GroupNorm -> SiLU -> 1x1 conv, +
    timestep embedding, GroupNorm -> SiLU -> dropout -> zero 1x1 conv, added back."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        emb_dim: int,
        ratio: float,
        *,
        num_heads: int,
        pool: int,
        kernel_size: int,
        depthwise: bool,
        dropout: float,
        num_groups: int,
    ) -> None:
        super().__init__()
        self.level = 0  # set by MixedUNet: the resolution level of the block
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.mixer = MixedBlock(
            out_ch,
            ratio,
            num_heads=num_heads,
            pool=pool,
            kernel_size=kernel_size,
            depthwise=depthwise,
            num_groups=num_groups,
        )
        self.norm1 = nn.GroupNorm(num_groups, out_ch)
        self.fc1 = nn.Conv2d(out_ch, out_ch, 1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(num_groups, out_ch)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc2 = zero_init(nn.Conv2d(out_ch, out_ch, 1))

    def forward(self, x: Tensor, emb: Tensor, t: Tensor) -> Tensor:
        h = self.mixer(self.skip(x))
        g = self.fc1(F.silu(self.norm1(h))) + self.emb(emb)[:, :, None, None]
        return h + self.fc2(self.drop(F.silu(self.norm2(g))))


class MixedUNet(nn.Module):
    """U-Net of :class:`ExpertBlock` s: ``forward(x, t)`` maps (B, C, H, W) and (B,) timesteps to
    (B, C, H, W), predicting exactly 0 at initialisation.

    Level i works at H / 2**i with ``base_channels * channel_mults[i]`` channels and attention
    fraction ``ratio`` (one float for every level, or one per level; the middle blocks take the
    deepest level's). ``pool`` is the attention branch's pooling at every level; H / 2**i must be
    divisible by it wherever a level has attention channels.
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        num_blocks: int = 1,
        ratio: float | Sequence[float] = 0.5,
        num_heads: int = 4,
        pool: int = 2,
        kernel_size: int = 3,
        depthwise: bool = True,
        dropout: float = 0.0,
        num_groups: int = 8,
        num_timesteps: int = 1000,
    ) -> None:
        super().__init__()
        channel_mults = tuple(channel_mults)
        if in_channels < 1 or not channel_mults or any(m < 1 for m in channel_mults):
            raise ValueError(
                f"in_channels must be >= 1 and channel_mults non-empty ints >= 1; got "
                f"in_channels={in_channels}, channel_mults={channel_mults}"
            )
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.ratios = _level_ratios(ratio, len(channel_mults))
        widths = [base_channels * m for m in channel_mults]
        for level, width in enumerate(widths):
            attention_channels(width, self.ratios[level], num_heads)  # named errors up front
        self.in_channels, self.num_levels, self.pool = in_channels, len(channel_mults), pool
        emb_dim = 4 * base_channels
        self.time_embed = TimestepEmbedding(base_channels, emb_dim, num_timesteps)
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        def block(cin: int, cout: int, level: int) -> ExpertBlock:
            made = ExpertBlock(
                cin,
                cout,
                emb_dim,
                self.ratios[level],
                num_heads=num_heads,
                pool=pool,
                kernel_size=kernel_size,
                depthwise=depthwise,
                dropout=dropout,
                num_groups=num_groups,
            )
            made.level = level  # the resolution level it works at (see mixers)
            return made

        ch, skip_chs = base_channels, [base_channels]
        self.down = nn.ModuleList()
        for level, width in enumerate(widths):
            for _ in range(num_blocks):
                self.down.append(Stage([block(ch, width, level)]))
                ch = width
                skip_chs.append(ch)
            if level < self.num_levels - 1:
                self.down.append(Stage([Downsample(ch)]))
                skip_chs.append(ch)
        deepest = self.num_levels - 1
        self.middle = Stage([block(ch, ch, deepest), block(ch, ch, deepest)])
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for i in range(num_blocks + 1):
                stage = Stage([block(ch + skip_chs.pop(), width, level)])
                ch = width
                if level > 0 and i == num_blocks:
                    stage.append(Upsample(ch))
                self.up.append(stage)
        self.out_norm = nn.GroupNorm(num_groups, ch)
        self.out_conv = zero_init(nn.Conv2d(ch, in_channels, 3, padding=1))

    def mixers(self, level: int) -> list[MixedBlock]:
        """The mixed blocks working at ``level`` (H / 2**level), down path, middle (the deepest
        level) and up path, in forward order."""
        if not 0 <= level < self.num_levels:
            raise ValueError(f"level must lie in 0..{self.num_levels - 1}, got {level}")
        return [m.mixer for m in self.modules() if isinstance(m, ExpertBlock) and m.level == level]

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.out_conv(F.silu(self.out_norm(unet_features(self, x, t))))


def _level_ratios(ratio: float | Sequence[float], levels: int) -> tuple[float, ...]:
    """One attention fraction per level, validated."""
    if isinstance(ratio, Sequence) and not isinstance(ratio, str):
        if len(ratio) != levels:
            raise ValueError(
                f"ratio must be one float or one per level ({levels}), got {len(ratio)} values"
            )
        return tuple(check_ratio(r, f"ratio[{i}]") for i, r in enumerate(ratio))
    return (check_ratio(ratio),) * levels
