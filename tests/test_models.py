"""Denoisers: shapes, zero-initialised outputs, per-sample independence, vmap(grad) chunks."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, vmap

from mtl_diffusion.builders import model_from_config, sample_shape
from mtl_diffusion.config import load
from mtl_diffusion.models import DiT, MLPDenoiser, UNet, build_model
from mtl_diffusion.models.embedding import TimestepEmbedding, sinusoidal_embedding
from mtl_diffusion.routing import RoutingSpec


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter (zero-initialised ones included) with small random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return model


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# (name, constructor, input shape without batch); small enough for a 2-core machine.
MODELS = [
    ("unet", lambda: UNet(base_channels=8, num_groups=4), (1, 8, 8)),
    (
        "unet-attn-dtr",
        lambda: UNet(
            base_channels=8,
            num_groups=4,
            attention_levels=(0, 1),
            num_heads=2,
            routing=RoutingSpec(),
        ),
        (1, 8, 8),
    ),
    (
        "dit-dtr",
        lambda: DiT(hidden_size=16, depth=2, num_heads=2, routing=RoutingSpec()),
        (1, 8, 8),
    ),
    ("mlp", lambda: MLPDenoiser(dim=2, hidden=16, depth=2), (2,)),
]
IDS = [name for name, _, _ in MODELS]


@pytest.mark.parametrize(
    "model, shape",
    [
        (UNet(base_channels=8, num_groups=4), (3, 1, 8, 8)),
        (
            UNet(base_channels=8, num_groups=4, attention_levels=(0, 1), scale_shift=True),
            (3, 1, 8, 8),
        ),
        (
            UNet(
                in_channels=3,
                base_channels=8,
                num_groups=4,
                channel_mults=(1, 2, 2),
                num_res_blocks=2,
                attention_levels=(2,),
                dropout=0.1,
            ),
            (2, 3, 32, 32),
        ),
        (DiT(hidden_size=16, depth=1, patch_size=2), (3, 1, 8, 8)),
        (DiT(hidden_size=16, depth=1, patch_size=4), (3, 1, 8, 8)),
        (DiT(image_size=16, in_channels=3, hidden_size=16, depth=1, patch_size=4), (2, 3, 16, 16)),
        (MLPDenoiser(), (5, 2)),
        (MLPDenoiser(dim=3, hidden=8, depth=1, num_timesteps=50), (5, 3)),
    ],
)
def test_output_shape(model, shape):
    t = torch.randint(0, 50, (shape[0],))
    out = randomize(model)(torch.randn(shape), t)
    assert out.shape == shape and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "model",
    [UNet(base_channels=8, num_groups=4, attention_levels=(1,)), DiT(hidden_size=16, depth=2)],
)
def test_zero_initialised_output_is_exactly_zero(model):
    out = model(torch.randn(3, 1, 8, 8), torch.tensor([0, 500, 999]))
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("name, make, shape", MODELS, ids=IDS)
def test_per_sample_independence(name, make, shape):
    """Sample 0's output and gradient do not change when sample 1 changes."""
    model = randomize(make())
    x, t = torch.randn(3, *shape), torch.tensor([7, 300, 999])

    def sample0(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        out = model(x, t)
        out[0].pow(2).sum().backward()
        return out[0].detach(), [p.grad.clone() for p in model.parameters()]

    out_a, grads_a = sample0(x, t)
    x2, t2 = x.clone(), t.clone()
    x2[1] = 5 * torch.randn(shape)
    t2[1] = 1
    out_b, grads_b = sample0(x2, t2)
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-6)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, make, shape", MODELS, ids=IDS)
def test_vmap_grad_over_chunks_equals_per_chunk_autograd(name, make, shape):
    model = randomize(make())
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    x, t = torch.randn(2, 3, *shape), torch.randint(0, 1000, (2, 3))  # 2 chunks of 3 samples

    def chunk_loss(p: dict[str, torch.Tensor], x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (p, buffers), (x, t)).pow(2).mean()

    batched = vmap(grad(chunk_loss), in_dims=(None, 0, 0))(params, x, t)
    for i in range(2):
        model.zero_grad()
        model(x[i], t[i]).pow(2).mean().backward()
        for k, p in model.named_parameters():
            # float32 summation order differs between the paths: tolerate 1e-4 of the scale
            scale = p.grad.abs().max().item() + 1e-12
            torch.testing.assert_close(batched[k][i], p.grad, rtol=1e-4, atol=1e-4 * scale)


def test_build_model():
    assert isinstance(build_model("unet", base_channels=8, num_groups=4), UNet)
    assert isinstance(build_model("dit", hidden_size=16, depth=1), DiT)
    assert isinstance(build_model("mlp"), MLPDenoiser)
    with pytest.raises(ValueError, match=r"arch must be one of \['dit', 'mlp', 'unet'\]"):
        build_model("resnet")


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: UNet(base_channels=12, num_groups=8), "num_groups"),
        (lambda: UNet(channel_mults=()), "channel_mults"),
        (lambda: UNet(attention_levels=(2,)), "attention_levels"),
        (lambda: UNet(attention_levels=(0,), num_heads=5), "num_heads"),
        (lambda: UNet(num_res_blocks=0), "num_res_blocks"),
        (lambda: UNet(dropout=1.0), "dropout"),
        (lambda: UNet(num_timesteps=1), "num_timesteps"),
        (lambda: DiT(image_size=8, patch_size=3), "patch_size"),
        (lambda: DiT(hidden_size=30, num_heads=3), "hidden_size"),
        (lambda: DiT(hidden_size=32, num_heads=3), "num_heads"),
        (lambda: DiT(depth=0), "depth"),
        (lambda: MLPDenoiser(hidden=7), "hidden"),
    ],
)
def test_constructors_reject_bad_arguments(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_forward_rejects_wrong_input_shape():
    t = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="x must be"):
        UNet(base_channels=8, num_groups=4)(torch.randn(2, 1, 7, 7), t)  # 7 is odd
    with pytest.raises(ValueError, match="x must be"):
        DiT(hidden_size=16, depth=1)(torch.randn(2, 1, 16, 16), t)
    with pytest.raises(ValueError, match="x must be"):
        MLPDenoiser()(torch.randn(2, 3), t)


def test_unpatchify_inverts_explicit_patch_extraction():
    model = DiT(image_size=8, in_channels=3, patch_size=4, hidden_size=16, depth=1)
    img = torch.randn(2, 3, 8, 8)
    tokens = [
        img[:, :, i * 4 : (i + 1) * 4, j * 4 : (j + 1) * 4].permute(0, 2, 3, 1).reshape(2, -1)
        for i in range(2)
        for j in range(2)
    ]
    assert torch.equal(model.unpatchify(torch.stack(tokens, dim=1)), img)


def test_timestep_embedding_rescales_to_1000_steps():
    emb = TimestepEmbedding(8, 4, num_timesteps=50)
    t = torch.tensor([0, 25, 49])
    want = emb.mlp(sinusoidal_embedding(t * 20.0, 8))
    torch.testing.assert_close(emb(t), want)
    feats = sinusoidal_embedding(torch.tensor([0.0]), 6)
    assert torch.equal(feats, torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]]))


@pytest.mark.parametrize(
    "make, low, high",
    [
        (lambda: UNet(base_channels=16), 120_000, 200_000),  # an earlier probe: about 150k
        (lambda: UNet(base_channels=32), 480_000, 800_000),  # about 600k
        (lambda: DiT(hidden_size=64, depth=4), 200_000, 500_000),
        (lambda: DiT(hidden_size=128, depth=4), 1_000_000, 1_600_000),
    ],
)
def test_parameter_counts_in_expected_range(make, low, high):
    assert low <= n_params(make()) <= high


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
@pytest.mark.parametrize("arch", ["unet", "dit"])
def test_every_profile_builds_both_denoisers(profile: str, arch: str) -> None:
    """The profiles' model settings are consistent (heads divide widths, patches tile images)."""
    cfg = load(profile, {"model.arch": arch})
    model = model_from_config(cfg)
    x = torch.randn(sample_shape(cfg, 1))
    with torch.no_grad():
        assert model(x, torch.tensor([500])).shape == x.shape
