"""A small CNN encoder for 8x8 digits with the projector (and SimSiam predictor) heads.

k-NN evaluation uses the encoder's features; the losses see the projector's (or predictor's)
outputs. BatchNorm as in the published methods (SimSiam relies on it in its heads).
"""

from __future__ import annotations

from torch import Tensor, nn


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, feature_dim): three 3x3 conv-BN-ReLU blocks (strides 1, 2, 2) of
    feature_dim / 4, / 2 and feature_dim channels, then global average pooling."""

    def __init__(self, in_channels: int = 1, feature_dim: int = 128):
        super().__init__()
        if feature_dim < 4 or feature_dim % 4:
            raise ValueError(f"feature_dim must be a positive multiple of 4, got {feature_dim}")
        widths = (feature_dim // 4, feature_dim // 2, feature_dim)
        layers: list[nn.Module] = []
        cin = in_channels
        for width, stride in zip(widths, (1, 2, 2), strict=True):
            layers += [
                nn.Conv2d(cin, width, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            cin = width
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = feature_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int, norm_output: bool = False) -> nn.Module:
    """Linear-BN-ReLU-Linear (with an affine-free BN on the output when `norm_output`)."""
    layers: list[nn.Module] = [
        nn.Linear(in_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    ]
    if norm_output:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


class SSLModel(nn.Module):
    """Encoder + projector, plus a predictor for SimSiam. forward -> (projection, prediction);
    the prediction is the projection itself when there is no predictor."""

    def __init__(
        self,
        in_channels: int,
        feature_dim: int,
        hidden_dim: int,
        proj_dim: int,
        predictor: bool = False,
    ):
        super().__init__()
        self.encoder = ConvEncoder(in_channels, feature_dim)
        self.projector = mlp_head(feature_dim, hidden_dim, proj_dim, norm_output=predictor)
        self.predictor = mlp_head(proj_dim, max(proj_dim // 4, 1), proj_dim) if predictor else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.projector(self.encoder(x))
        return z, (z if self.predictor is None else self.predictor(z))
