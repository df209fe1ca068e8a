"""The generator (a small U-Net) and the patch critic (Sim et al., App. D, Fig. 6), in Flax."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class ConvBlock(nn.Module):
    """Two (3×3 convolution, instance normalisation, leaky ReLU) layers (Sim et al., Fig. 6a)."""

    features: int

    @nn.compact
    def __call__(self, h):
        for _ in range(2):
            h = nn.Conv(self.features, (3, 3), padding="SAME")(h)
            h = nn.InstanceNorm()(h)
            h = nn.leaky_relu(h, 0.2)
        return h


class UNet(nn.Module):
    """U-Net with ``depth`` poolings, ``width · 2^level`` channels, skip connections and a final
    1×1 convolution without activation. Spatial sides must be multiples of ``2^depth``."""

    width: int
    depth: int
    out_channels: int = 1

    @nn.compact
    def __call__(self, h):
        skips = []
        for level in range(self.depth):
            h = ConvBlock(self.width * 2**level)(h)
            skips.append(h)
            h = nn.avg_pool(h, (2, 2), strides=(2, 2))
        h = ConvBlock(self.width * 2**self.depth)(h)
        for level in reversed(range(self.depth)):
            h = nn.ConvTranspose(self.width * 2**level, (2, 2), strides=(2, 2))(h)
            h = ConvBlock(self.width * 2**level)(jnp.concatenate([h, skips[level]], axis=-1))
        return nn.Conv(self.out_channels, (1, 1))(h)


class PatchCritic(nn.Module):
    """PatchGAN critic (Isola et al., 2017): strided 4×4 convolutions with instance normalisation
    and leaky ReLU, a 1-channel map of patch scores, averaged into one value per sample (the
    Kantorovich potential φ(x) of Sim et al., eq. 20)."""

    width: int
    depth: int

    @nn.compact
    def __call__(self, h):
        for level in range(self.depth):
            h = nn.Conv(self.width * 2**level, (4, 4), strides=(2, 2), padding="SAME")(h)
            if level > 0:
                h = nn.InstanceNorm()(h)
            h = nn.leaky_relu(h, 0.2)
        h = nn.Conv(1, (3, 3), padding="SAME")(h)
        return h.mean(axis=(1, 2, 3))
