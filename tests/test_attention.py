"""Attention: contractions, head splits, scaled_dot_product_attention, nn.MultiheadAttention.

Every model is a tiny transformer block (a stem, attention in a residual, an MLP, a head)
so that the attention widths couple with a residual stream the way they do in a ViT.
Each test asserts the exact-mode oracle, the output shapes and the kept head counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import fxprune
from fxprune.errors import InputError

DIM, HEADS, TOKENS, FEATURES = 32, 4, 7, 8
HEAD_DIM = DIM // HEADS
TOLERANCE = 1e-5


class PackedAttention(nn.Module):
    """timm's Attention: one qkv linear, reshape (B, N, 3, H, D), permute, unbind; matmul or sdpa."""

    def __init__(self, fused: bool = False) -> None:
        super().__init__()
        self.qkv, self.proj, self.fused = nn.Linear(DIM, 3 * DIM), nn.Linear(DIM, DIM), fused
        self.num_heads, self.head_dim, self.scale = HEADS, HEAD_DIM, HEAD_DIM ** -0.5

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            x = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, channels))


class IndexedAttention(nn.Module):
    """torchvision's Swin: ``qkv[0], qkv[1], qkv[2]`` and a relative position bias table indexed per head."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(DIM, 3 * DIM), nn.Linear(DIM, DIM)
        self.table = nn.Parameter(torch.randn(2 * TOKENS - 1, HEADS) * 0.5)
        positions = torch.arange(TOKENS)
        self.register_buffer("index", (positions[:, None] - positions[None, :] + TOKENS - 1).flatten())

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, HEADS, channels // HEADS).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.table[self.index].view(tokens, tokens, -1).permute(2, 0, 1).unsqueeze(0)
        attn = (q * HEAD_DIM ** -0.5) @ k.transpose(-2, -1) + bias
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(batch, tokens, channels))


class EinsumAttention(nn.Module):
    """Separate q, k, v linears, heads split with view, scores and output by einsum."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.proj = (nn.Linear(DIM, DIM) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, _ = x.shape
        q, k, v = (layer(x).view(batch, tokens, HEADS, HEAD_DIM) for layer in (self.q, self.k, self.v))
        scores = torch.einsum("bnhd,bmhd->bhnm", q, k) * HEAD_DIM ** -0.5
        out = torch.einsum("bhnm,bmhd->bnhd", scores.softmax(-1), v)
        return self.proj(out.reshape(batch, tokens, DIM))


class CosineAttention(nn.Module):
    """Swin V2: queries and keys normalised per head (F.normalize over the head width), a per-head logit scale."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(DIM, 3 * DIM), nn.Linear(DIM, DIM)
        self.logit_scale = nn.Parameter(torch.rand(HEADS, 1, 1) + 0.5)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, channels = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, HEADS, HEAD_DIM).permute(2, 0, 3, 1, 4).unbind(0)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1) * self.logit_scale.exp()
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(batch, tokens, channels))


class MaskedAttention(nn.Module):
    """sdpa with an additive per-head bias (H, N, N) as its mask, on separate q, k, v."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.proj = (nn.Linear(DIM, DIM) for _ in range(4))
        self.bias = nn.Parameter(torch.randn(HEADS, TOKENS, TOKENS))

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, _ = x.shape
        q, k, v = (layer(x).view(batch, tokens, HEADS, HEAD_DIM).transpose(1, 2) for layer in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, DIM))


class ModuleAttention(nn.Module):
    """nn.MultiheadAttention: packed in_proj_weight, or separate weights when kdim/vdim differ."""

    def __init__(self, batch_first: bool = True, kdim: int | None = None, need_weights: bool = False) -> None:
        super().__init__()
        self.memory = nn.Linear(FEATURES, kdim or DIM)
        self.attn = nn.MultiheadAttention(DIM, HEADS, batch_first=batch_first, kdim=kdim, vdim=kdim)
        self.batch_first, self.need_weights = batch_first, need_weights

    def forward(self, x: Tensor, source: Tensor) -> Tensor:
        memory = self.memory(source)
        if not self.batch_first:
            x, memory = x.transpose(0, 1), memory.transpose(0, 1)
        out, weights = self.attn(x, memory, memory, need_weights=self.need_weights)
        out = out if self.batch_first else out.transpose(0, 1)
        return out + weights.mean() if self.need_weights else out


class TransformerBlock(nn.Module):
    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.stem, self.attention = nn.Linear(FEATURES, DIM), attention
        self.fc1, self.fc2, self.head = nn.Linear(DIM, 2 * DIM), nn.Linear(2 * DIM, DIM), nn.Linear(DIM, 5)

    def forward(self, x: Tensor) -> Tensor:
        y = self.stem(x)
        y = y + (self.attention(y, x) if isinstance(self.attention, ModuleAttention) else self.attention(y))
        y = y + self.fc2(F.gelu(self.fc1(y)))
        return self.head(y.mean(1))


CASES: dict[str, Callable[[], nn.Module]] = {
    "packed_matmul": lambda: PackedAttention(),
    "packed_sdpa": lambda: PackedAttention(fused=True),
    "indexed_per_head_bias": IndexedAttention,
    "einsum": EinsumAttention,
    "cosine_per_head_scale": CosineAttention,
    "sdpa_mask": MaskedAttention,
    "mha_packed": lambda: ModuleAttention(),
    "mha_unpacked_kdim": lambda: ModuleAttention(kdim=16),
    "mha_sequence_first": lambda: ModuleAttention(batch_first=False),
}


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return TransformerBlock(CASES[name]()).eval()


def _inputs() -> tuple[Tensor]:
    return (torch.randn(2, TOKENS, FEATURES, generator=torch.Generator().manual_seed(1)),)


def _compile(model: nn.Module, mode: str, **options: Any) -> fxprune.CompileResult:
    return fxprune.compile(model, 0.5, example_inputs=_inputs(), exact=True, attention=mode, **options)


def _query_rows(result: fxprune.CompileResult) -> int:
    """Rows of the pruned query projection: kept heads x kept query width."""
    params = dict(result.module.named_parameters())
    for name in ("attention.qkv.weight", "attention.attn.in_proj_weight"):
        if name in params:
            return params[name].shape[0] // 3
    for name in ("attention.q.weight", "attention.attn.q_proj.weight"):
        if name in params:
            return params[name].shape[0]
    raise AssertionError("no query projection")


# Per-head norms change when head widths go: see test_cosine_attention_keeps_head_widths_in_exact_mode.
PRUNED = [(name, mode) for name in sorted(CASES) for mode in ("heads", "head_dim")
          if (name, mode) != ("cosine_per_head_scale", "head_dim")]


@pytest.mark.parametrize(("name", "mode"), PRUNED)
def test_attention_prunes_exactly(name: str, mode: str) -> None:
    model = _model(name)
    inputs = _inputs()
    result = _compile(model, mode)
    assert fxprune.verify(model, result, inputs) <= TOLERANCE
    assert result.module(*inputs).shape == model(*inputs).shape
    assert [g for g in result.groups if "attention" in " ".join(g.modules) and not g.prunable] == []
    rows = _query_rows(result)
    assert rows < DIM  # the attention widths pruned
    if mode == "heads":
        assert rows % HEAD_DIM == 0  # whole heads
    else:
        assert rows % HEADS == 0  # the same widths in every head


def test_cosine_attention_keeps_head_widths_in_exact_mode() -> None:
    model = _model("cosine_per_head_scale")
    result = _compile(model, "head_dim")
    assert any("norm over channels" in (g.reason or "") for g in result.groups)
    assert fxprune.verify(model, result, _inputs()) <= TOLERANCE


@pytest.mark.parametrize("name", ["packed_matmul", "packed_sdpa", "einsum", "cosine_per_head_scale"])
def test_heads_mode_keeps_half_the_heads(name: str) -> None:
    result = _compile(_model(name), "heads")
    assert _query_rows(result) == HEAD_DIM * HEADS // 2


def test_sdpa_keeps_the_original_scale_when_the_query_width_shrinks() -> None:
    result = _compile(_model("packed_sdpa"), "head_dim")
    calls = [n for n in result.module.graph.nodes if n.target is F.scaled_dot_product_attention]
    assert _query_rows(result) < DIM
    assert [n.kwargs.get("scale") for n in calls] == [pytest.approx(1 / math.sqrt(HEAD_DIM))]


def test_the_oracle_silences_removed_query_key_widths() -> None:
    """Removed query/key widths have no weight reading them: without silencing them at their
    producers, the masked reference keeps their products and differs from the pruned model."""
    model = _model("einsum")
    result = _compile(model, "head_dim")
    assert fxprune.verify(model, result, _inputs()) <= TOLERANCE
    result.groups.record.contracted.clear()
    assert fxprune.verify(model, result, _inputs()) > 10 * TOLERANCE


def test_the_oracle_fails_a_mis_sliced_head() -> None:
    model = _model("packed_matmul")
    result = _compile(model, "heads")
    with torch.no_grad():  # the query rows of the two kept heads swapped: a head sliced from the wrong place
        weight = result.module.get_submodule("attention.qkv").weight
        weight[:2 * HEAD_DIM] = torch.cat([weight[HEAD_DIM:2 * HEAD_DIM], weight[:HEAD_DIM]]).clone()
    assert fxprune.verify(model, result, _inputs()) > 10 * TOLERANCE


def test_attention_matmuls_are_counted_and_estimated() -> None:
    inputs = _inputs()
    fused = fxprune.analyze(_model("packed_sdpa"), inputs)
    unfused = fxprune.analyze(_model("packed_matmul"), inputs)
    assert fused.before.macs == unfused.before.macs  # sdpa's two products counted like the matmuls
    for name in ("packed_matmul", "packed_sdpa", "einsum"):
        for mode in ("heads", "head_dim"):
            analysis = fxprune.analyze(_model(name), inputs, exact=True, attention=mode)
            result = _compile(_model(name), mode)
            assert analysis.estimate(result.plan).macs == result.after.macs


def test_averaged_attention_weights_freeze_heads_in_exact_mode() -> None:
    torch.manual_seed(0)
    model = TransformerBlock(ModuleAttention(need_weights=True)).eval()
    result = _compile(model, "heads")
    assert any("attention weights averaged over heads" in (g.reason or "") for g in result.groups)
    assert fxprune.verify(model, result, _inputs()) <= TOLERANCE


def test_an_unknown_attention_mode_is_an_input_error() -> None:
    with pytest.raises(InputError, match="attention must be one of"):
        _compile(_model("packed_matmul"), "both")


class SizedByChannels(nn.Module):
    """b reshaped with channel counts read at run time from a: the plan fixes them, so they are rewritten."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.conv_b = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 1)
        self.head_a, self.head_b = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.conv_a(x), self.conv_b(x)
        n, c, h, w = a.shape
        return self.head_a(a), self.head_b(b.flatten(2).reshape(n, c, h, w))


def test_a_size_read_from_channel_counts_is_rewritten() -> None:
    torch.manual_seed(0)
    model = SizedByChannels().eval()
    x = torch.randn(1, 3, 5, 5)
    result = fxprune.compile(model, {"conv_a": 0.5, "conv_b": 0.25}, example_inputs=(x,), exact=True)
    assert fxprune.verify(model, result, (x,)) <= TOLERANCE
    assert result.module.conv_a.out_channels == 4 and result.module.conv_b.out_channels == 6


@pytest.mark.parametrize("name", ["packed_sdpa", "indexed_per_head_bias", "einsum"])
def test_attention_prunes_exactly_through_torch_export(name: str) -> None:
    model = _model(name)
    result = _compile(model, "heads", capture="export")
    assert result.capture.front_end == "export"
    assert fxprune.verify(model, result, _inputs()) <= TOLERANCE
    assert _query_rows(result) == HEAD_DIM * HEADS // 2


@torch.fx.wrap
def _windowed_attention(x: Tensor, qkv_weight: Tensor, proj_weight: Tensor, heads: int) -> Tensor:
    """A wrapped function, as torchvision wraps ``shifted_window_attention``: one opaque call to fx."""
    batch, tokens, channels = x.shape
    qkv = F.linear(x, qkv_weight).reshape(batch, tokens, 3, heads, channels // heads).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    return F.linear(out.transpose(1, 2).reshape(batch, tokens, channels), proj_weight)


class WrappedAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(DIM, 3 * DIM, bias=False), nn.Linear(DIM, DIM, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return _windowed_attention(x, self.qkv.weight, self.proj.weight, HEADS)


def test_auto_capture_goes_through_wrapped_functions_with_torch_export() -> None:
    torch.manual_seed(0)
    model = TransformerBlock(WrappedAttention()).eval()
    result = _compile(model, "heads")
    assert result.capture.front_end == "export"
    assert any("_windowed_attention" in line for line in result.capture.left)
    assert fxprune.verify(model, result, _inputs()) <= TOLERANCE
    assert _query_rows(result) == HEAD_DIM * HEADS // 2
    traced = _compile(model, "heads", capture="fx")  # symbolic tracing keeps the call whole: frozen
    assert any("no rule for _windowed_attention" in (g.reason or "") for g in traced.groups)


class ShiftedWindowMask(nn.Module):
    """Swin's attention mask is built with ``x.new_zeros``: x's channels are not read."""

    def forward(self, x: Tensor) -> Tensor:
        mask = x.new_zeros((x.shape[1], x.shape[1]))
        return x + mask.sum()


def test_new_zeros_reads_no_channels() -> None:
    torch.manual_seed(0)
    model = TransformerBlock(ShiftedWindowMask()).eval()
    for capture in ("fx", "export"):
        result = _compile(model, "heads", capture=capture)
        assert result.module.stem.out_features == DIM // 2, capture
        assert fxprune.verify(model, result, _inputs()) <= TOLERANCE
