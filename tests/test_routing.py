"""DTR / random channel masks, the per-sample router, and routing inside the models."""

from __future__ import annotations

import pytest
import torch

from mtl_diffusion.builders import model_from_config
from mtl_diffusion.config import load
from mtl_diffusion.models import DiT, UNet
from mtl_diffusion.models.dit import DiTBlock
from mtl_diffusion.routing import ChannelRouter, RoutingSpec, dtr_mask, make_router, random_mask

T = 1000


def brute_dtr(num_tasks: int, channels: int, beta: float, alpha: float) -> torch.Tensor:
    """Transcription of the DTR formula, one channel at a time."""
    active = int(beta * channels)
    rows = []
    for t in range(num_tasks):
        start = round((t / (num_tasks - 1)) ** alpha * (channels - active))
        rows.append([start <= c < start + active for c in range(channels)])
    return torch.tensor(rows)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter (zero-initialised ones included) with small random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return model


CASES = [
    (2, 10, 0.8, 4.0),
    (3, 7, 0.8, 4.0),  # int(5.6) = 5
    (5, 33, 0.5, 1.0),  # int(16.5) = 16
    (10, 13, 0.3, 2.0),  # int(3.9) = 3
    (1000, 128, 0.8, 4.0),  # int(102.4) = 102
    (1000, 96, 0.8, 4.0),  # int(76.8) = 76
    (50, 64, 0.9, 0.5),
    (7, 5, 1.0, 4.0),
]


@pytest.mark.parametrize("num_tasks, channels, beta, alpha", CASES)
def test_dtr_mask_matches_formula(num_tasks, channels, beta, alpha):
    mask = dtr_mask(num_tasks, channels, beta, alpha)
    assert mask.dtype == torch.bool and mask.shape == (num_tasks, channels)
    assert torch.equal(mask, brute_dtr(num_tasks, channels, beta, alpha))
    assert (mask.sum(1) == int(beta * channels)).all()


def test_dtr_window_moves_monotonically_and_spans_channels():
    mask = dtr_mask(T, 128, 0.8, 4.0)
    active = int(0.8 * 128)
    start = mask.float().argmax(1)  # first active channel
    assert (start[1:] >= start[:-1]).all()
    assert start[0] == 0 and start[-1] == 128 - active
    # alpha = 4 moves slowly at low t: halfway in t, the window has moved 1/16 of the way.
    assert start[T // 2] == round((500 / 999) ** 4 * (128 - active))
    # every row is one contiguous window
    span = mask.float().flip(1).argmax(1)
    assert ((128 - span) - start == active).all()


def test_adjacent_rows_share_most_channels():
    mask = dtr_mask(T, 128, 0.8, 4.0)
    overlap = (mask[1:] & mask[:-1]).sum(1)
    assert overlap.min() >= int(0.8 * 128) - 1
    # while the first and last tasks share only 2 * 102 - 128 = 76 channels
    assert (mask[0] & mask[-1]).sum() == 2 * 102 - 128


def test_beta_one_is_all_ones():
    assert dtr_mask(T, 48, beta=1.0).all()
    assert random_mask(T, 48, beta=1.0).all()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(beta=0.0), "beta"),
        (dict(beta=1.5), "beta"),
        (dict(alpha=0.0), "alpha"),
        (dict(num_tasks=1), "num_tasks"),
        (dict(channels=2, beta=0.3), "beta"),  # int(0.6) = 0 active channels
    ],
)
def test_dtr_mask_rejects_bad_input(kwargs, name):
    args = dict(num_tasks=10, channels=16) | kwargs
    with pytest.raises(ValueError, match=name):
        dtr_mask(**args)


def test_random_mask_seeded_with_fixed_row_sums():
    a = random_mask(100, 40, beta=0.8, seed=3)
    assert torch.equal(a, random_mask(100, 40, beta=0.8, seed=3))
    assert not torch.equal(a, random_mask(100, 40, beta=0.8, seed=4))
    assert (a.sum(1) == 32).all()
    assert not torch.equal(a[0], a[1])  # not one shared subset
    with pytest.raises(ValueError, match="beta"):
        random_mask(10, 16, beta=0.0)


def test_routing_spec_validation_and_off_switch():
    with pytest.raises(ValueError, match="kind"):
        RoutingSpec(kind="sliding")
    with pytest.raises(ValueError, match="beta"):
        RoutingSpec(beta=2.0)
    with pytest.raises(ValueError, match="alpha"):
        RoutingSpec(alpha=-1.0)
    assert make_router(None, T, 16) is None
    assert make_router(RoutingSpec(kind="none"), T, 16) is None
    assert torch.equal(RoutingSpec(kind="random", seed=5).mask(T, 16), random_mask(T, 16, 0.8, 5))


@pytest.mark.parametrize("kind", ["dtr", "random"])
def test_router_gather_equals_python_loop(kind):
    spec = RoutingSpec(kind=kind, beta=0.6, alpha=2.0, seed=1)
    mask = spec.mask(T, 12).float()
    t = torch.tensor([0, 999, 500, 3, 777])
    maps = torch.randn(5, 12, 4, 3)
    got = ChannelRouter(T, 12, spec)(maps, t)
    want = torch.stack([maps[i] * mask[t[i]][:, None, None] for i in range(5)])
    assert torch.equal(got, want)
    tokens = torch.randn(5, 9, 12)
    got = ChannelRouter(T, 12, spec, channel_dim=-1)(tokens, t)
    want = torch.stack([tokens[i] * mask[t[i]][None, :] for i in range(5)])
    assert torch.equal(got, want)
    with pytest.raises(ValueError, match="channel_dim"):
        ChannelRouter(T, 12, spec, channel_dim=2)


def test_router_keeps_dtype():
    router = ChannelRouter(T, 8, RoutingSpec())
    h = torch.randn(2, 8, 2, 2, dtype=torch.float64)
    assert router(h, torch.tensor([0, 999])).dtype == torch.float64


MODELS = {
    "unet": lambda routing: UNet(
        base_channels=16, attention_levels=(0, 1), num_heads=2, routing=routing
    ),
    "dit": lambda routing: DiT(hidden_size=32, depth=2, num_heads=2, routing=routing),
}


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_routing_adds_no_parameters(arch):
    plain = MODELS[arch](None)
    routed = MODELS[arch](RoutingSpec())
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in routed.named_parameters()]
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in routed.parameters())
    assert plain.state_dict().keys() == routed.state_dict().keys()  # masks are not saved
    assert any(isinstance(m, ChannelRouter) for m in routed.modules())


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_beta_one_equals_unrouted_model(arch):
    plain = randomize(MODELS[arch](None))
    full = MODELS[arch](RoutingSpec(beta=1.0))
    full.load_state_dict(plain.state_dict())
    dtr = MODELS[arch](RoutingSpec(beta=0.8))
    dtr.load_state_dict(plain.state_dict())
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([0, 10, 500, 999])
    with torch.no_grad():
        ref = plain(x, t)
        assert torch.equal(full(x, t), ref)
        assert not torch.allclose(dtr(x, t), ref, atol=1e-3)  # routing really acts


def test_unet_masked_channels_get_no_gradient_into_zero_init_conv():
    spec = RoutingSpec(beta=0.5)
    model = randomize(UNet(base_channels=16, routing=spec))
    t = torch.full((3,), 999)
    model(torch.randn(3, 1, 8, 8), t).pow(2).sum().backward()
    block = model.down[0][0]
    inactive = ~spec.mask(T, 16)[999]
    assert block.conv2.weight.grad[:, inactive].abs().max() == 0
    assert block.conv2.weight.grad[:, ~inactive].abs().max() > 0
    assert model.out_conv.weight.grad[:, inactive].abs().max() == 0  # output conv, also 16 wide


def test_dit_block_is_residual_plus_function_of_masked_input():
    """x_out = x + f(m_t * x): inactive input channels pass through the residual untouched."""
    block = randomize(DiTBlock(16, 2, 2.0, RoutingSpec(beta=0.5), T))
    x, c, t = torch.randn(2, 5, 16), torch.randn(2, 16), torch.tensor([0, 999])
    inactive = ~block.router.mask[t]  # (2, 16)
    delta = torch.randn(2, 5, 16) * inactive[:, None, :]
    with torch.no_grad():
        diff = block(x + delta, c, t) - block(x, c, t)
    torch.testing.assert_close(diff, delta, rtol=0, atol=1e-6)


def test_unet_attention_block_masks_its_normalised_input():
    """Attention blocks: GroupNorm -> mask -> attention; inactive channels never reach qkv."""
    spec = RoutingSpec(beta=0.5)
    model = randomize(UNet(base_channels=16, attention_levels=(0,), num_heads=2, routing=spec))
    model(torch.randn(2, 1, 8, 8), torch.full((2,), 0)).pow(2).sum().backward()
    attn = model.down[0][1]
    inactive = ~spec.mask(T, 16)[0]
    assert attn.attn.qkv.weight.grad[:, inactive].abs().max() == 0
    assert attn.attn.qkv.weight.grad[:, ~inactive].abs().max() > 0


@pytest.mark.parametrize("arch", ["unet", "dit"])
@pytest.mark.parametrize("kind", ["none", "dtr", "random"])
def test_config_switch_builds_the_configured_masks(arch, kind):
    """model.routing / routing_beta / routing_alpha / routing_seed reach every router."""
    cfg = load(
        "smoke",
        {
            "model.arch": arch,
            "model.routing": kind,
            "model.routing_beta": 0.75,
            "model.routing_alpha": 2.0,
            "model.routing_seed": 7,
        },
    )
    routers = [m for m in model_from_config(cfg).modules() if isinstance(m, ChannelRouter)]
    if kind == "none":
        assert routers == []
        return
    # one per DiT block; one per ResBlock (2 down, 2 middle, 4 up) plus the output layer
    assert len(routers) == (cfg.model.depth if arch == "dit" else 9)
    for router in routers:
        num_tasks, channels = router.mask.shape
        assert num_tasks == cfg.diffusion.num_timesteps
        want = (
            brute_dtr(num_tasks, channels, 0.75, 2.0)
            if kind == "dtr"
            else random_mask(num_tasks, channels, 0.75, seed=7)
        )
        assert torch.equal(router.mask, want)


@pytest.mark.parametrize("arch", ["unet", "dit"])
@pytest.mark.parametrize("kind", ["dtr", "random"])
def test_routed_models_get_exact_per_cluster_gradients(arch, kind):
    """Routing composes with the ANT engine: on a routed model every per-cluster gradient path
    equals chunk-by-chunk autograd through diffusion.per_sample_loss (min-SNR weighted, k = 5)."""
    from mtl_diffusion.diffusion import per_sample_loss
    from mtl_diffusion.mtl.cluster_gradients import cluster_gradients
    from mtl_diffusion.train import Trainer

    cfg = load(
        "smoke",
        {
            "model.arch": arch,
            "model.hidden_size": 32,
            "model.depth": 2,
            "model.base_channels": 8,
            "model.routing": kind,
            "model.routing_beta": 0.5,
            "timesteps.sampler": "stratified",
            "diffusion.loss_weight": "min_snr",
            "mtl.method": "uw",
            "train.batch_size": 10,
        },
    )
    tr = Trainer(cfg)
    for _ in range(2):  # off the zero init, through the UW + routing training loop
        assert torch.isfinite(torch.tensor(tr.train_step()))
    x0, t, noise = tr.sample_batch()
    batch = tr.denoising_batch(x0, t, noise)
    snr = tr.schedule.snr(t)
    weight = (torch.clamp(snr, max=5.0) / snr).float()  # min-SNR-5 for eps prediction
    params = [p for p in tr.model.parameters() if p.requires_grad]
    rows = []
    for i in range(batch.num_clusters):  # sample b is in cluster b mod k
        part = slice(i, None, batch.num_clusters)
        loss = (
            weight[part] * per_sample_loss(tr.model, tr.schedule, x0[part], t[part], noise[part])
        ).sum() / len(t)
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    expected = torch.stack(rows)
    for path in ("fast", "reference"):
        torch.testing.assert_close(
            cluster_gradients(tr.model, batch, path).grads, expected, rtol=1e-4, atol=1e-7
        )


@pytest.mark.parametrize(
    "arch, setting, routed_output",
    [("unet", "arch", True), ("unet", "no", False), ("dit", "arch", False), ("dit", "yes", True)],
)
def test_output_layer_routing_switch(arch: str, setting: str, routed_output: bool) -> None:
    """U-Net: the authors' rule routes the output layer (GroupNorm -> zero-initialised conv);
    DiT: the published code leaves the final layer unrouted. model.route_output overrides.
    Routed: the output layer's input is zero on every channel outside task t's window."""
    cfg = load("smoke", {"model.arch": arch, "model.routing": "dtr", "model.route_output": setting})
    model = model_from_config(cfg)
    final = model.out_conv if arch == "unet" else model.final
    seen = []
    final.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    t = torch.tensor([0, 300, 600, 999])
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
        model(torch.randn(4, 1, 8, 8), t)
    channels = seen[0].shape[1 if arch == "unet" else -1]
    inactive = ~dtr_mask(cfg.diffusion.num_timesteps, channels)[t]  # (4, C)
    h = seen[0] if arch == "unet" else seen[0].transpose(1, 2)  # (4, C, ...)
    zeroed = (h.flatten(2).abs().amax(2) == 0)[inactive]
    assert bool(zeroed.all()) == routed_output and bool(zeroed.any()) == routed_output


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: dtr_mask(5, 2.5), "channels must be an integer >= 1, got 2.5"),
        (lambda: dtr_mask(5.0, 8), "num_tasks must be an integer >= 2, got 5.0"),
        (lambda: dtr_mask(True, 8), "num_tasks must be an integer >= 2, got True"),
        (lambda: dtr_mask(5, 8, alpha=float("inf")), "alpha must be > 0"),
        (lambda: random_mask(5, 4.0), "channels must be an integer >= 1, got 4.0"),
        (lambda: random_mask(5, 8, seed=1.5), "seed must be an integer >= 0, got 1.5"),
    ],
)
def test_masks_take_integer_sizes_only(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
