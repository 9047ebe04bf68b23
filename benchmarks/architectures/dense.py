"""Dense prediction: U-Net decoders, an FPN, HRNet multi-resolution fusion, DeepLabV3+ ASPP and BiSeNet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .catalog import IMAGE, LARGE_IMAGE, case, conv_bn

__all__ = ["CASES"]


class UNet(nn.Module):
    """U-Net (Ronneberger et al., 2015): two down steps, up by ``F.interpolate`` (``nearest`` or ``bilinear``)
    or a ``ConvTranspose2d`` (``upsample="transpose"``), skips concatenated on channels."""

    def __init__(self, upsample: str) -> None:
        super().__init__()
        self.upsample = upsample
        self.enc1, self.enc2, self.enc3 = conv_bn(3, 8), conv_bn(8, 16), conv_bn(16, 32)
        self.dec2, self.dec1 = conv_bn(32 + 16, 16), conv_bn(16 + 8, 8)
        self.up_conv = nn.ConvTranspose2d(32, 32, 2, 2)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        if self.upsample == "transpose":
            u = self.up_conv(e3)
        elif self.upsample == "bilinear":
            u = F.interpolate(e3, scale_factor=2, mode="bilinear", align_corners=False)
        else:
            u = F.interpolate(e3, scale_factor=2, mode="nearest")
        d2 = self.dec2(torch.cat([u, e2], dim=1))
        mode = "nearest" if self.upsample == "transpose" else self.upsample
        u = F.interpolate(d2, size=e1.shape[-2:], mode=mode)
        return self.out(self.dec1(torch.cat([e1, u], dim=1)))


class FPN(nn.Module):
    """Feature pyramid network (Lin et al., 2017): 1x1 laterals, top-down upsample-and-add, a 3x3 smoothing
    conv per level and a shared classifier; returns one flattened map per level."""

    def __init__(self) -> None:
        super().__init__()
        self.c2, self.c3, self.c4 = conv_bn(3, 8, stride=2), conv_bn(8, 16, stride=2), conv_bn(16, 32, stride=2)
        self.lateral = nn.ModuleList(nn.Conv2d(c, 16, 1) for c in (8, 16, 32))
        self.smooth = nn.ModuleList(nn.Conv2d(16, 16, 3, padding=1) for _ in range(3))
        self.cls = nn.Conv2d(16, 4, 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        c2 = self.c2(x)
        c3 = self.c3(c2)
        c4 = self.c4(c3)
        p4 = self.lateral[2](c4)
        p3 = self.lateral[1](c3) + F.interpolate(p4, scale_factor=2, mode="nearest")
        p2 = self.lateral[0](c2) + F.interpolate(p3, size=c2.shape[-2:], mode="bilinear", align_corners=False)
        return [self.cls(smooth(p)).flatten(2) for smooth, p in zip(self.smooth, (p2, p3, p4), strict=True)]


class HRFuse(nn.Module):
    """HRNet fuse layer (Sun et al., 2019): a residual block per branch, then every branch sums all the others,
    upsampled by 1x1 conv + BN and ``interpolate(size=shape[-2:])`` or downsampled by strided 3x3 convs."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(conv_bn(c, c), conv_bn(c, c, act=None)) for c in widths)
        self.fuse = nn.ModuleList(nn.ModuleList(self._link(widths, i, j) for j in range(len(widths)))
                                  for i in range(len(widths)))

    @staticmethod
    def _link(widths: tuple[int, ...], target: int, source: int) -> nn.Module:
        """How branch ``source`` reaches the resolution and width of branch ``target``."""
        if source > target:
            return conv_bn(widths[source], widths[target], 1, act=None)
        steps = [conv_bn(widths[source], widths[target] if last else widths[source], stride=2,
                         act=None if last else nn.ReLU)
                 for last in (k == target - source - 1 for k in range(target - source))]
        return nn.Sequential(*steps)  # empty, the identity, when source == target

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [F.relu(branch(x) + x) for branch, x in zip(self.branches, xs, strict=True)]
        out = []
        for i, links in enumerate(self.fuse):
            y = xs[i]
            for j, (link, x) in enumerate(zip(links, xs, strict=True)):
                if j > i:
                    y = y + F.interpolate(link(x), size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
                elif j < i:
                    y = y + link(x)
            out.append(F.relu(y))
        return out


class HRNet(nn.Module):
    """Tiny HRNet: three resolutions, two fuse stages, all branches upsampled and concatenated for the head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8, stride=2)
        self.down1, self.down2 = conv_bn(8, 16, stride=2), conv_bn(16, 32, stride=2)
        self.stages = nn.Sequential(HRFuse(), HRFuse())
        self.head = nn.Conv2d(8 + 16 + 32, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        x0 = self.stem(x)
        x1 = self.down1(x0)
        ys = self.stages([x0, x1, self.down2(x1)])
        h, w = ys[0].size(2), ys[0].size(3)
        up = [ys[0]] + [F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False) for y in ys[1:]]
        return self.head(torch.cat(up, 1))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabV3): 1x1, dilated 3x3 branches and an image-pool branch
    upsampled back, concatenated and projected."""

    def __init__(self, in_channels: int, out_channels: int = 16, rates: tuple[int, ...] = (2, 4)) -> None:
        super().__init__()
        self.branch1x1 = conv_bn(in_channels, out_channels, 1)
        self.dilated = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=r, dilation=r, bias=False),
                          nn.BatchNorm2d(out_channels), nn.ReLU()) for r in rates)
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), conv_bn(in_channels, out_channels, 1))
        self.project = conv_bn(out_channels * (2 + len(rates)), out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        outs = [self.branch1x1(x)] + [branch(x) for branch in self.dilated]
        outs.append(F.interpolate(self.image_pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ (Chen et al., 2018): ASPP on the deep features, a decoder joining projected low-level features."""

    def __init__(self) -> None:
        super().__init__()
        self.low = nn.Sequential(conv_bn(3, 16, stride=2), conv_bn(16, 16))
        self.high = nn.Sequential(conv_bn(16, 32, stride=2), conv_bn(32, 32, stride=2))
        self.aspp = ASPP(32)
        self.low_proj = conv_bn(16, 8, 1)
        self.decoder = conv_bn(16 + 8, 16)
        self.cls = nn.Conv2d(16, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        low = self.low(x)
        y = F.interpolate(self.aspp(self.high(low)), size=low.shape[2:], mode="bilinear", align_corners=True)
        y = self.cls(self.decoder(torch.cat([y, self.low_proj(low)], 1)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class AttentionRefinement(nn.Module):
    """BiSeNet attention refinement module: a global-average channel attention with
    ``avg_pool2d(feat, feat.size()[2:])``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv_bn(in_channels, out_channels)
        self.attention = conv_bn(out_channels, out_channels, 1, act=nn.Sigmoid)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv(x)
        return torch.mul(feat, self.attention(F.avg_pool2d(feat, feat.size()[2:])))


class FeatureFusion(nn.Module):
    """BiSeNet feature fusion module: concat the spatial and context paths, then a residual channel attention."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = conv_bn(in_channels, out_channels, 1)
        self.squeeze = nn.Conv2d(out_channels, out_channels // 4, 1, bias=False)
        self.excite = nn.Conv2d(out_channels // 4, out_channels, 1, bias=False)

    def forward(self, spatial: Tensor, context: Tensor) -> Tensor:
        feat = self.block(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.excite(F.relu(self.squeeze(F.avg_pool2d(feat, feat.size()[2:])))))
        return torch.mul(feat, attention) + feat


class BiSeNet(nn.Module):
    """BiSeNet (Yu et al., 2018): a spatial path, a context path refined at 1/16 and 1/32 with a global
    average tail, sizes read from ``x.size()``, and a fusion module."""

    def __init__(self) -> None:
        super().__init__()
        self.spatial = nn.Sequential(conv_bn(3, 16, stride=2), conv_bn(16, 16, stride=2), conv_bn(16, 32, stride=2))
        self.context16 = nn.Sequential(conv_bn(3, 16, stride=2), conv_bn(16, 32, stride=2),
                                       conv_bn(32, 32, stride=2), conv_bn(32, 48, stride=2))
        self.context32 = conv_bn(48, 64, stride=2)
        self.arm16, self.arm32 = AttentionRefinement(48, 32), AttentionRefinement(64, 32)
        self.conv_avg = conv_bn(64, 32, 1)
        self.head16, self.head32 = conv_bn(32, 32), conv_bn(32, 32)
        self.ffm = FeatureFusion(64, 64)
        self.out = nn.Conv2d(64, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.size()[2:]
        f16 = self.context16(x)
        f32 = self.context32(f16)
        h16, w16 = f16.size()[2:]
        avg = F.interpolate(self.conv_avg(F.avg_pool2d(f32, f32.size()[2:])), (f32.size(2), f32.size(3)),
                            mode="nearest")
        f32_up = self.head32(F.interpolate(self.arm32(f32) + avg, (h16, w16), mode="nearest"))
        f16_up = self.head16(F.interpolate(self.arm16(f16) + f32_up, (h16 * 2, w16 * 2), mode="nearest"))
        fused = self.ffm(self.spatial(x), f16_up)
        return F.interpolate(self.out(fused), (height, width), mode="bilinear", align_corners=True)


CASES = (
    case("UNet nearest interpolate + cat skips", lambda: UNet("nearest"), IMAGE),
    case("UNet bilinear interpolate + cat skips", lambda: UNet("bilinear"), IMAGE),
    case("UNet ConvTranspose2d up + cat skips", lambda: UNet("transpose"), IMAGE),
    case("FPN laterals, upsample-add, shared classifier, list output", FPN, IMAGE),
    case("HRNet fuse: interpolate(size=shape[-2:]), strided downs, sums", HRNet, LARGE_IMAGE),
    case("DeepLabV3+ ASPP with image-pool branch + decoder", DeepLabV3Plus, LARGE_IMAGE),
    case("BiSeNet attention refinement + global average + feature fusion", BiSeNet, LARGE_IMAGE),
)
