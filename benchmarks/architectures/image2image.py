"""Image-to-image networks: super-resolution with pixel (un)shuffle, and fast style transfer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .catalog import IMAGE, SMALL_IMAGE, case

__all__ = ["CASES"]


class ESPCN(nn.Module):
    """ESPCN (Shi et al., 2016): convs at low resolution, then a sub-pixel convolution (pixel shuffle) upscales.

    The shuffle is ``F.pixel_shuffle`` or the ``nn.PixelShuffle`` module.
    """

    def __init__(self, functional: bool, scale: int = 2) -> None:
        super().__init__()
        self.functional, self.scale = functional, scale
        self.conv1 = nn.Conv2d(3, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        self.out = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3(torch.tanh(self.conv2(torch.tanh(self.conv1(x)))))
        x = F.pixel_shuffle(x, self.scale) if self.functional else self.shuffle(x)
        return self.out(F.relu(x))


class UnshuffleSR(nn.Module):
    """Real-ESRGAN x2 style (Wang et al., 2021): ``PixelUnshuffle`` on the input and on an inner feature,
    ``PixelShuffle`` upsampling, residual adds around both."""

    def __init__(self) -> None:
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(2)
        self.first = nn.Conv2d(12, 16, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(16, 16, 3, padding=1))
        self.mid_down = nn.PixelUnshuffle(2)
        self.mid = nn.Conv2d(64, 16, 1)
        self.up = nn.Conv2d(16, 16 * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.up2 = nn.Conv2d(16, 16 * 4, 3, padding=1)
        self.last = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        f = self.first(self.unshuffle(x))
        f = f + self.body(f)
        g = self.shuffle(self.up(self.mid(self.mid_down(f))))
        return self.last(self.shuffle(self.up2(f + g)))


class ReflectPad(nn.Module):
    """Reflection padding with ``F.pad(mode="reflect")`` instead of ``nn.ReflectionPad2d``."""

    def __init__(self, padding: int) -> None:
        super().__init__()
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, (self.padding,) * 4, mode="reflect")


class StyleNet(nn.Module):
    """Fast neural style transfer (Johnson et al., 2016): reflection-padded convs, affine InstanceNorm2d,
    a residual block, nearest upsampling then conv. ``functional_pad`` pads with ``F.pad``."""

    def __init__(self, functional_pad: bool = False) -> None:
        super().__init__()
        pad = ReflectPad if functional_pad else nn.ReflectionPad2d

        def layer(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
            """Reflection pad, conv, affine instance norm."""
            return nn.Sequential(pad(kernel // 2), nn.Conv2d(in_channels, out_channels, kernel, stride),
                                 nn.InstanceNorm2d(out_channels, affine=True))

        self.down1, self.down2 = layer(3, 8, 9), layer(8, 16, 3, 2)
        self.res1, self.res2 = layer(16, 16, 3), layer(16, 16, 3)
        self.up1 = layer(16, 8, 3)
        self.out = nn.Sequential(pad(4), nn.Conv2d(8, 3, 9))

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.down2(F.relu(self.down1(x))))
        x = x + self.res2(F.relu(self.res1(x)))
        x = F.relu(self.up1(F.interpolate(x, mode="nearest", scale_factor=2)))
        return self.out(x)


CASES = (
    case("ESPCN F.pixel_shuffle", lambda: ESPCN(functional=True), SMALL_IMAGE),
    case("ESPCN nn.PixelShuffle", lambda: ESPCN(functional=False), SMALL_IMAGE),
    case("Real-ESRGAN PixelUnshuffle in and mid, PixelShuffle up, residuals", UnshuffleSR, IMAGE),
    case("style transfer: ReflectionPad2d, InstanceNorm2d(affine)", StyleNet, IMAGE),
    case("style transfer with F.pad(mode='reflect')", lambda: StyleNet(functional_pad=True), IMAGE),
)
