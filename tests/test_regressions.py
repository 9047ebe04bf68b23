"""Regression tests: every bug the fuzzer (tests/test_fuzz.py, benchmarks/fuzz.py) found, minimised.

Each test is a plain hand-written module and the assertion that failed. The oracle
(``fxprune.verify``) must be ~0 in exact mode; compile must never raise anything but
an ``FxPruneError``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import fxprune

TOLERANCE = 1e-4


def _compile_and_verify(model: nn.Module, inputs: tuple[Any, ...], ratio: float = 0.5,
                        **options: Any) -> fxprune.CompileResult:
    """Compile in exact mode and assert the oracle and the output shapes."""
    result = fxprune.compile(model, ratio, example_inputs=inputs, exact=True, **options)
    with torch.no_grad():
        expected, got = model(*inputs), result.module(*inputs)
    assert got.shape == expected.shape
    assert fxprune.verify(model, result, inputs) <= TOLERANCE * max(1.0, float(expected.abs().max()))
    return result


def _out_channels(result: fxprune.CompileResult, name: str) -> int:
    return result.module.get_submodule(name).weight.shape[0]


class ListInputWithDefault(nn.Module):
    """forward(x, extra=None) called with a list: torch.fx emitted ``extra_1 = None, = ...``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.head = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)

    def forward(self, x: Tensor, extra: Any = None) -> Tensor:
        return self.head(torch.relu(self.stem(x) + extra[0]))


def test_list_input_with_default_argument_compiles() -> None:
    torch.manual_seed(0)
    model = ListInputWithDefault().eval()
    inputs = (torch.randn(1, 3, 4, 4), [torch.randn(1, 4, 4, 4)])
    result = _compile_and_verify(model, inputs)
    assert result.module(*inputs).shape == (1, 2, 4, 4)


class GroupNormOneGroup(nn.Module):
    """GroupNorm(1, C) normalises all channels together: no channel can go alone.

    It was treated as per-channel, pruned to GroupNorm(0, C'), which fails at run time
    (ZeroDivisionError) and was not caught because shape propagation skips norms.
    """

    def __init__(self, affine: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(3, 6, 3, padding=1, bias=False)
        self.norm = nn.GroupNorm(1, 6, affine=affine)
        self.conv2 = nn.Conv1d(6, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.norm(self.conv1(x)))


def test_group_norm_with_one_group_keeps_its_channels() -> None:
    for affine in (False, True):
        torch.manual_seed(0)
        model = GroupNormOneGroup(affine).eval()
        result = _compile_and_verify(model, (torch.randn(1, 3, 5),), ratio=0.3)
        assert result.module.norm.num_groups == 1
        assert _out_channels(result, "conv1") == 6


def test_functional_group_norm_with_one_group_keeps_its_channels() -> None:
    class Functional(GroupNormOneGroup):
        def forward(self, x: Tensor) -> Tensor:
            return self.conv2(F.group_norm(self.conv1(x), 1))

    torch.manual_seed(0)
    model = Functional(False).eval()
    result = _compile_and_verify(model, (torch.randn(1, 3, 5),), ratio=0.3)
    assert _out_channels(result, "conv1") == 6


class LayerNormDynamicShape(nn.Module):
    """F.layer_norm(y, y.shape[-1:]): the rewrite called len() on the shape node (TypeError)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(x)
        return self.conv2(F.layer_norm(y, y.shape[-1:]))


def test_layer_norm_with_dynamic_normalized_shape() -> None:
    torch.manual_seed(0)
    model = LayerNormDynamicShape().eval()
    result = _compile_and_verify(model, (torch.randn(1, 3, 4, 4),))
    assert _out_channels(result, "conv1") == 2  # normalising over W leaves channels free


class ShapeForBatchOnly(nn.Module):
    """Reading ``y.shape`` froze every channel of ``y`` (its value did not match the rule's result)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.conv(x))
        return self.fc(y.view(y.shape[0], -1))


def test_shape_query_of_batch_does_not_freeze_channels() -> None:
    torch.manual_seed(0)
    model = ShapeForBatchOnly().eval()
    result = _compile_and_verify(model, (torch.randn(2, 3, 4, 4),))
    assert _out_channels(result, "conv") == 4


class ChannelCountAsValue(nn.Module):
    """``y * y.size(1)``: the channel count is data; pruning changed the output (silent wrong model)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(x)
        return self.conv2(y) * y.size(1) + y.shape[1]


def test_channel_count_read_as_a_value_freezes_those_channels() -> None:
    torch.manual_seed(0)
    model = ChannelCountAsValue().eval()
    result = _compile_and_verify(model, (torch.randn(1, 3, 4, 4),))
    assert _out_channels(result, "conv1") == 4
    assert any("channel count read as a value" in (g.reason or "") for g in result.groups)


class DynamicChannelShuffle(nn.Module):
    """torchvision's channel_shuffle reads the channel count only to size a view: still prunable."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(x)
        batch, channels, height, width = y.size()
        y = y.view(batch, 2, channels // 2, height, width).transpose(1, 2).contiguous()
        return self.conv2(y.view(batch, -1, height, width))


def test_channel_count_that_only_sizes_a_view_stays_prunable() -> None:
    torch.manual_seed(0)
    model = DynamicChannelShuffle().eval()
    result = _compile_and_verify(model, (torch.randn(1, 3, 4, 4),))
    assert _out_channels(result, "conv1") == 4


class SplitAcrossUnrelatedBranches(nn.Module):
    """A split of a concat whose piece holds channels of two unrelated groups (``a``'s last,
    all of ``b``'s) and feeds no layer: the piece was filed under ``a``'s group alone, so
    ``b``'s channels indexed past ``a``'s (IndexError in the planner)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 4, 1)
        self.c, self.e = nn.Conv2d(7, 2, 1), nn.Conv2d(4, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([self.a(x), self.b(x)], 1)
        head, _tail = torch.split(y, [7, 5], 1)  # the tail feeds nothing
        return self.c(head) + self.e(self.b(x))


def test_split_piece_spanning_two_groups() -> None:
    torch.manual_seed(0)
    model = SplitAcrossUnrelatedBranches().eval()
    result = _compile_and_verify(model, (torch.randn(1, 3, 4, 4),))
    assert _out_channels(result, "a") == 4 and _out_channels(result, "b") == 2


class ContiguousBeforeView(nn.Module):
    """transpose -> contiguous -> view: shape propagation took contiguous() for the identity,
    kept the transposed strides, and the view failed (a model rejected as 'inputs do not fit')."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(x).view(1, 2, 4, 4, 4).transpose(1, 2).contiguous()
        return self.conv2(y.view(1, 8, 4, 4))


def test_contiguous_then_view() -> None:
    torch.manual_seed(0)
    model = ContiguousBeforeView().eval()
    result = _compile_and_verify(model, (torch.randn(1, 3, 4, 4),))
    assert _out_channels(result, "conv1") == 4


class DynamicShuffleManyGroups(nn.Module):
    """A computed channel shuffle with more groups than channels per group: the fold (4, 2)
    was pruned along its longer, literal dim (4 -> 2 in the view), while ``channels // 4``
    was recomputed from the pruned tensor: the view failed (RewriteError). A size read from
    channel counts is now rewritten to its kept count, so the fold prunes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3 = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(x)
        batch, channels = y.shape[0], y.size(1)
        y = y.view(batch, 4, channels // 4, 4, 4).transpose(1, 2).contiguous().view(batch, -1, 4, 4)
        return self.conv3(torch.relu(self.conv2(y)))


def test_dynamic_shuffle_with_more_groups_than_channels_per_group() -> None:
    torch.manual_seed(0)
    model = DynamicShuffleManyGroups().eval()
    result = _compile_and_verify(model, (torch.randn(1, 3, 4, 4),))
    assert _out_channels(result, "conv2") == 4  # the group after the shuffle still prunes
    assert _out_channels(result, "conv1") == 4  # and so does the shuffled one


class LegacyDataAndSamePadding(nn.Module):
    """``x.data`` (legacy code) and TF-style "same" padding computed from ``x.size()`` at run time."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.head = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, stride=2), nn.Conv2d(8, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.conv1(x)).data
        pad = y.size(-1) % 2 + 1  # an int recomputed from the pruned tensor at run time
        y = F.pad(y, [pad // 2, pad - pad // 2, pad // 2, pad - pad // 2])
        return self.head(torch.relu(self.conv2(y)))


def test_data_attribute_and_computed_pad_widths_pass_channels_through() -> None:
    torch.manual_seed(0)
    result = _compile_and_verify(LegacyDataAndSamePadding().eval(), (torch.randn(1, 3, 9, 9),))
    assert _out_channels(result, "conv1") == 4 and _out_channels(result, "conv2") == 4


class BranchOnData(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x if x.sum() > 0 else -x


def test_trace_error_names_the_innermost_module() -> None:
    model = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 1), BranchOnData()))
    try:
        fxprune.compile(model, 0.5, example_inputs=(torch.randn(1, 3, 4, 4),))
    except fxprune.TraceError as error:
        assert "cannot trace in module '0.1' (0/0.1)" in str(error)
    else:
        raise AssertionError("a data-dependent branch must not trace")


class SegmentationHead(nn.Module):
    """Returns an OrderedDict, as torchvision's segmentation models do."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone, self.classifier, self.aux = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 2, 1), nn.Conv2d(8, 2, 1)

    def forward(self, x: Tensor) -> Any:
        from collections import OrderedDict

        features = torch.relu(self.backbone(x))
        return OrderedDict(out=self.classifier(features), aux=self.aux(features))


def test_ordered_dict_outputs_stay_ordered_dicts() -> None:
    from collections import OrderedDict

    torch.manual_seed(0)
    model, x = SegmentationHead().eval(), torch.randn(1, 3, 6, 6)
    result = fxprune.compile(model, 0.5, example_inputs=(x,), exact=True)
    out = result.module(x)
    assert type(out) is OrderedDict and list(out) == ["out", "aux"]
    assert _out_channels(result, "backbone") == 4
    assert fxprune.verify(model, result, (x,)) < TOLERANCE
