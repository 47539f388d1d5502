"""Exact or refuse: the fast per-cluster gradient path on models and idioms we did not design.

Every exact case is compared with the reference path (k separate forward and backward passes,
one per cluster over only its own samples); every refused idiom must raise FastPathError
naming the module or parameter. The third-party model is a randomly initialised diffusers
UNet2DModel (test-only dependency, no downloads).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtl_diffusion.mtl.cluster_gradients import DenoisingBatch, FastPathError, cluster_gradients
from mtl_diffusion.mtl.engine import FastPathMismatchError, MTLEngine

diffusers = pytest.importorskip("diffusers")

UNBALANCED = torch.tensor([0, 0, 1, 2, 2, 2, 1, 0, 0, 2, 1, 0])  # sizes 5, 3, 4; not b mod k


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Small random weights everywhere (zero-initialised layers would hide gradient paths)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model


# Two levels of 16 and 32 channels on 8x8 single-channel images, the deeper with attention.
UNET = {"sample_size": 8, "in_channels": 1, "out_channels": 1, "layers_per_block": 1,
        "block_out_channels": (16, 32), "norm_num_groups": 8,
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D")}  # fmt: skip


def diffusers_unet(**kwargs: object) -> nn.Module:
    return randomise(diffusers.UNet2DModel(**{**UNET, **kwargs}))


def unet_forward(model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
    return model(x_t, t, **cond).sample


def image_batch(clusters: torch.Tensor = UNBALANCED, cond: dict | None = None) -> DenoisingBatch:
    gen = torch.Generator().manual_seed(1)
    b = len(clusters)
    x = torch.randn(b, 1, 8, 8, generator=gen)
    t = torch.randint(0, 1000, (b,), generator=gen)
    weight = torch.rand(b, generator=gen) + 0.5
    k = int(clusters.max()) + 1
    return DenoisingBatch(
        x, t, torch.randn(x.shape, generator=gen), weight, k, clusters, cond or {}
    )


def assert_exact(model: nn.Module, batch: DenoisingBatch, forward=None, paths=("fast",)) -> None:
    kwargs = {} if forward is None else {"forward": forward}
    reference = cluster_gradients(model, batch, "reference", **kwargs)
    assert (reference.grads.norm(dim=1) > 0).all()
    for path in paths:
        got = cluster_gradients(model, batch, path, **kwargs)
        torch.testing.assert_close(got.losses, reference.losses, rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(got.grads, reference.grads, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------- a model we did not write


def test_diffusers_unet_class_conditional_with_attention_and_unbalanced_clusters() -> None:
    model = diffusers_unet(num_class_embeds=10)  # adds an nn.Embedding of the class labels
    labels = torch.randint(0, 10, (len(UNBALANCED),), generator=torch.Generator().manual_seed(2))
    batch = image_batch(cond={"class_labels": labels})
    assert_exact(model, batch, unet_forward, paths=("fast", "vmap"))


def test_forward_hook_that_masks_a_layer_output_is_exact() -> None:
    """The natural way to attach a DTR mask to a third-party model (was 32 % off)."""
    model = diffusers_unet()
    batch = image_batch()
    masks = (torch.rand(1000, 16, generator=torch.Generator().manual_seed(3)) > 0.3).float()
    layer = model.down_blocks[0].resnets[0].conv1
    layer.register_forward_hook(lambda m, args, out: out * masks[batch.current_t][:, :, None, None])

    def forward(m: nn.Module, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        batch.current_t = t  # type: ignore[attr-defined]  # what the hook reads
        return m(x_t, t).sample

    assert_exact(model, batch, forward)


def test_forward_pre_hook_that_masks_a_layer_input_is_exact() -> None:
    model = diffusers_unet()
    batch = image_batch()
    layer = model.up_blocks[1].resnets[0].conv2
    layer.register_forward_pre_hook(lambda m, args: (args[0] * 0.5,))
    assert_exact(model, batch, unet_forward)


# --------------------------------------------------------------------- idioms handled exactly


class Shared(nn.Module):
    """One block called twice, a tied weight, an embedding, RMSNorm and assorted convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.strided = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2)
        self.conv1d = nn.Conv1d(16, 16, 3, padding=1)
        self.block = nn.Linear(16, 16)
        self.tied = nn.Linear(16, 16, bias=False)
        self.tied.weight = self.block.weight
        self.norm = nn.RMSNorm(16)
        self.layer_norm = nn.LayerNorm(16, bias=False)
        self.embed = nn.Embedding(1000, 16, padding_idx=0)
        self.out = nn.Conv2d(16, 1, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.strided(F.silu(self.depthwise(F.silu(self.conv(x)))))  # (B, 16, 4, 4)
        h = self.conv1d(h.flatten(2)).transpose(1, 2)  # (B, 16 positions, 16)
        h = h + self.embed(t)[:, None]
        h = self.block(F.silu(self.block(self.norm(h))))  # called twice
        h = self.layer_norm(self.tied(h))
        h = h.transpose(1, 2).reshape(len(x), 16, 4, 4)
        return F.interpolate(self.out(h), scale_factor=2)


def test_shared_block_tied_weights_embedding_and_convolutions_are_exact() -> None:
    batch = image_batch()
    batch.t[0] = 0  # the padding index gets no gradient
    assert_exact(randomise(Shared()), batch, paths=("fast", "vmap"))


def test_interleaved_layout_with_a_remainder_is_exact() -> None:
    clusters = torch.arange(13) % 5  # 3, 3, 3, 2, 2
    assert_exact(diffusers_unet(), image_batch(clusters), unet_forward)


# --------------------------------------------------------------------- idioms refused


class Tokens(nn.Module):
    """A linear map over tokens; `mode` picks an idiom the capture cannot see."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.proj = nn.Linear(1, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(1)[..., None]  # (B, 64, 1)
        if self.mode == "reshaped":
            h = self.proj(tokens.reshape(-1, 1)).reshape(len(x), 64, 4)
        elif self.mode == "transposed":
            h = self.proj(tokens.transpose(0, 1)).transpose(0, 1)
        elif self.mode == "functional":
            h = F.linear(tokens, self.proj.weight, self.proj.bias)
        elif self.mode == "in-place":
            hidden = tokens * 1.0
            h = self.proj(hidden)
            hidden.mul_(2.0)
        else:
            h = self.proj(tokens)
        return self.head(F.silu(h)).reshape(x.shape)


class Overridden(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(2.0 * x)


def test_refuses_a_layer_applied_to_a_reshaped_batch() -> None:
    with pytest.raises(
        FastPathError, match="proj: its input has shape \\(960, 1\\), not the batch first"
    ):
        cluster_gradients(Tokens("reshaped"), image_batch(), "fast")


def test_refuses_a_transposed_batch_dimension() -> None:
    with pytest.raises(FastPathError, match="proj: its input has shape \\(64, 15, 1\\)"):
        cluster_gradients(Tokens("transposed"), image_batch(), "fast")


def test_refuses_a_parameter_used_outside_its_layer() -> None:
    with pytest.raises(FastPathError, match="proj.weight: the parameter is used by linear"):
        cluster_gradients(Tokens("functional"), image_batch(), "fast")


def test_refuses_a_parameter_in_the_loss() -> None:
    model = Tokens("plain")

    def regularised(output: torch.Tensor, batch: DenoisingBatch) -> torch.Tensor:
        mse = ((output - batch.target) ** 2).flatten(1).mean(1)
        return mse + 1e-3 * (model.head.weight**2).sum()

    with pytest.raises(FastPathError, match="head.weight: the parameter is used by .* outside"):
        cluster_gradients(model, image_batch(), "fast", loss=regularised)


def test_refuses_an_input_modified_in_place_after_the_layer() -> None:
    with pytest.raises((FastPathError, RuntimeError), match="in.?place"):
        cluster_gradients(Tokens("in-place"), image_batch(), "fast")


@pytest.mark.parametrize(
    "build, match",
    [
        (
            lambda: nn.Sequential(
                nn.Flatten(), nn.Linear(64, 64), nn.BatchNorm1d(64, affine=False)
            ),
            "2: BatchNorm1d in training mode couples the samples",
        ),
        (
            lambda: nn.Sequential(nn.Flatten(), Overridden(64, 64)),
            "1: Overridden overrides the forward of Linear",
        ),
        (lambda: nn.Sequential(nn.Conv2d(1, 1, 3, padding="same")), "0: it needs integer zero"),
        (
            lambda: nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")),
            "0: it needs integer zero",
        ),
        (
            lambda: nn.Sequential(
                nn.Flatten(), nn.utils.parametrizations.weight_norm(nn.Linear(64, 64))
            ),
            "parametrizations.weight: ParametrizationList has trainable \\['original0'",
        ),
    ],
)
def test_refuses_layers_it_cannot_capture(build, match: str) -> None:
    def forward(model, x_t, t):
        return model(x_t).reshape(x_t.shape)

    with pytest.raises(FastPathError, match=match):
        cluster_gradients(build(), image_batch(), "fast", forward=forward)


def test_refuses_attention_with_its_own_projection_parameters() -> None:
    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(1, 1, batch_first=True)

        def forward(self, x, t):
            tokens = x.flatten(1)[..., None]
            return self.attn(tokens, tokens, tokens)[0].reshape(x.shape)

    with pytest.raises(FastPathError, match="attn: MultiheadAttention has trainable"):
        cluster_gradients(Attention(), image_batch(), "fast")


def test_refuses_backward_hooks_and_global_forward_hooks() -> None:
    model = Tokens("plain")
    handle = model.proj.register_full_backward_hook(lambda m, gi, go: None)
    with pytest.raises(FastPathError, match="proj: it has backward hooks"):
        cluster_gradients(model, image_batch(), "fast")
    handle.remove()
    handle = nn.modules.module.register_module_forward_hook(lambda m, a, out: None)
    try:
        with pytest.raises(FastPathError, match="global module hooks"):
            cluster_gradients(model, image_batch(), "fast")
    finally:
        handle.remove()
    assert_exact(model, image_batch())  # and without them it is exact


def test_refuses_conditioning_shared_by_the_batch_inside_a_layer() -> None:
    class Context(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.context = nn.Linear(3, 64)
            self.shared = torch.ones(1, 3)

        def forward(self, x, t):
            return x * self.context(self.shared).reshape(1, 1, 8, 8)

    with pytest.raises(FastPathError, match="context: its input has shape \\(1, 3\\)"):
        cluster_gradients(Context(), image_batch(), "fast")


# --------------------------------------------------------------------- the engine's self-check


class Coupled(nn.Module):
    """Subtracts the batch mean: samples are coupled, which no structural check can see."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.out = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x, t):
        h = F.silu(self.conv(x))
        return self.out(h - h.mean(0, keepdim=True))


def test_engine_refuses_a_model_that_couples_samples_on_its_first_batch() -> None:
    batch = image_batch()
    engine = MTLEngine(randomise(Coupled()), "pcgrad", 3)
    with pytest.raises(FastPathMismatchError, match="cluster .* most in (conv|out)"):
        engine.objective(batch)
    unchecked = MTLEngine(randomise(Coupled()), "pcgrad", 3, self_check=False)
    unchecked.objective(batch)  # the documented switch: no comparison, no error


def test_engine_refuses_a_transposed_batch_of_the_same_size() -> None:
    """(B, N, C) transposed to (N, B, C) with N == B passes every shape check."""

    class Square(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(12, 12)

        def forward(self, x, t):
            tokens = x.flatten(2).transpose(1, 2)[:, :12, 0:1].expand(-1, -1, 12)  # (B, 12, 12)
            h = self.proj(tokens.transpose(0, 1)).transpose(0, 1)  # mixes samples
            return x + h.mean((1, 2)).reshape(-1, 1, 1, 1)

    engine = MTLEngine(randomise(Square()), "mgda", 3)
    with pytest.raises(FastPathMismatchError, match="proj"):
        engine.objective(image_batch(torch.arange(12) % 3))  # 12 rows, no padding


def test_self_check_leaves_dropout_and_random_state_untouched() -> None:
    """A model with dropout: the check (in eval mode, random state restored) passes and the
    run is bitwise the run without the check."""
    batch = image_batch()

    def run(check: bool) -> list[torch.Tensor]:
        torch.manual_seed(5)
        model = diffusers_unet(dropout=0.2)
        engine = MTLEngine(model, "pcgrad", 3, forward=unet_forward, self_check=check)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(2):
            optimizer.zero_grad()
            engine.objective(batch).objective.backward()
            optimizer.step()
        assert model.training
        return [p.detach().clone() for p in model.parameters()]

    for checked, unchecked in zip(run(True), run(False), strict=True):
        assert torch.equal(checked, unchecked)


# --------------------------------------------------------------------- explicit cluster ids


@pytest.mark.parametrize(
    "clusters, match",
    [
        (torch.tensor([0, 0, 2, 2]), "cluster 1 has no sample"),
        (torch.tensor([0, 1, 2, 3]), "must lie in 0..2"),
        (torch.tensor([0.0, 1.0, 2.0, 0.0]), "integer tensor"),
        (None, "needs clusters="),
    ],
)
def test_cluster_ids_are_validated(clusters, match: str) -> None:
    x = torch.zeros(4, 1, 8, 8)
    with pytest.raises(ValueError, match=match):
        DenoisingBatch(x, torch.zeros(4, dtype=torch.long), x, torch.ones(4), 3, clusters)


def test_per_sample_conditioning_must_have_one_row_per_sample() -> None:
    x = torch.zeros(4, 1, 8, 8)
    with pytest.raises(ValueError, match="cond\\['y'\\] must be a tensor with one row per sample"):
        DenoisingBatch(x, torch.zeros(4), x, torch.ones(4), cond={"y": torch.zeros(1)})


# --------------------------------------------------------------------- idioms found in review


class Idioms(nn.Module):
    """A conv net whose forward, by `mode`, uses one more idiom a user's model may have."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.embed = nn.Embedding(1000, 8)
        self.out = nn.Conv2d(8, 1, 3, padding=1)
        self.register_buffer("mean", torch.zeros(8))
        self.register_buffer("var", torch.ones(8))

    def forward(self, x, t):
        h = self.conv(x.type_as(self.conv.weight))
        e = self.embed(t)
        if self.mode == "edited embedding":
            e *= 2.0  # in place on the embedding's output
        if self.mode == "tensor hook" and h.requires_grad:
            h.register_hook(lambda g: 3.0 * g)  # changes what conv's weight gradient sees
        h = F.silu(h + e[:, :, None, None])
        if self.mode == "functional batch norm":
            h = F.batch_norm(h, self.mean, self.var, training=self.training)
        if self.mode == "indices edited":
            t.add_(1)  # the embedding's input, after the call
        return self.out(h)


@pytest.mark.parametrize("mode", ["edited embedding", "tensor hook", "plain"])
def test_tensor_hooks_and_in_place_edits_of_outputs_are_exact(mode: str) -> None:
    batch = image_batch()
    batch.x_t.requires_grad_()  # data that requires grad: only the parameters count
    assert_exact(randomise(Idioms(mode)), batch)


def test_refuses_batch_norm_in_training_mode_through_the_functional_api() -> None:
    engine = MTLEngine(randomise(Idioms("functional batch norm")), "pcgrad", 3)
    with pytest.raises(FastPathError, match="batch_norm in training mode couples the samples"):
        engine.objective(image_batch())  # the eval-mode self-check alone would miss it


def test_refuses_an_embedding_whose_indices_change_after_the_call() -> None:
    """Autograd never sees this (the capture ends the backward at the embedding's output)."""
    batch = image_batch()
    batch.t = batch.t.clone()
    with pytest.raises(FastPathError, match="embed: its input was modified in place"):
        cluster_gradients(randomise(Idioms("indices edited")), batch, "fast")


def test_refuses_a_forward_patched_on_the_instance() -> None:
    model = randomise(Idioms("plain"))
    plain = model.conv.forward
    model.conv.forward = lambda x: plain(2.0 * x)  # what adapter patchers do
    with pytest.raises(FastPathError, match="conv: its forward is replaced on the instance"):
        cluster_gradients(model, image_batch(), "fast")


def test_refuses_trainable_inputs_from_outside_the_batch() -> None:
    model, encoder = randomise(Idioms("plain")), nn.Linear(8 * 8, 8 * 8)

    def forward(m, x_t, t):  # an encoder outside the model feeds one of its layers
        return m.out(encoder(x_t.flatten(1)).reshape(-1, 1, 8, 8).expand(-1, 8, -1, -1))

    with pytest.raises(FastPathError, match="out: its input depends on trainable tensors"):
        cluster_gradients(model, image_batch(), "fast", forward=forward)


def test_a_loss_must_give_one_value_per_sample_and_may_read_the_cluster_ids() -> None:
    model, batch = randomise(Idioms("plain")), image_batch()

    def mean_loss(output, b):
        return ((output - b.target) ** 2).mean()

    for path in ("fast", "reference"):
        with pytest.raises(ValueError, match="one value per sample, shape \\(\\d+,\\); got \\(\\)"):
            cluster_gradients(model, batch, path, loss=mean_loss)

    def by_cluster(output, b):  # e.g. a per-cluster scale
        scale = torch.tensor([1.0, 2.0, 3.0])[b.clusters]
        return scale * ((output - b.target) ** 2).flatten(1).mean(1)

    reference = cluster_gradients(model, batch, "reference", loss=by_cluster)
    fast = cluster_gradients(model, batch, "fast", loss=by_cluster)
    torch.testing.assert_close(fast.grads, reference.grads, rtol=1e-4, atol=1e-6)
