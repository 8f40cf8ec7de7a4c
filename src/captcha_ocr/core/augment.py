"""Training-image augmentation: small, text-safe changes, in the tf.data feed only.

Each training batch is redrawn every epoch: a small rotation, shear, shift,
scale and perspective warp (one projective transform per image), then blur,
contrast and noise. Nothing flips or mirrors (a mirrored "b" is a "d"), and the
default strengths keep the text inside the frame. Validation and test images
never pass through here, and neither does the network: export and serving read
images as they come.

Every random number is drawn with stateless ops from a per-batch seed that a
seeded ``tf.data.Dataset.random`` hands out, so a run with the same
``train.seed`` sees the same images, whatever the parallelism, and each epoch
sees new ones. Works on (N, H, W, C) for any C: grey or colour.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from captcha_ocr.config import TrainParams

if TYPE_CHECKING:
    import tensorflow as tf


def augments(p: TrainParams) -> bool:
    """Whether ``p`` changes any training image."""
    strengths = (
        p.augment_rotate,
        p.augment_shear,
        p.augment_shift,
        p.augment_scale,
        p.augment_warp,
        p.augment_squeeze,
        p.augment_contrast,
        p.augment_noise,
        p.augment_blur,
    )
    return p.augment and any(strengths)


def augment_batch(
    images: tf.Tensor, seed: tf.Tensor, p: TrainParams, strength: tf.Tensor | float = 1.0
) -> tf.Tensor:
    """A float32 batch (N, H, W, C) of 0-255 pixels, changed at random by ``seed`` (2 int).

    ``strength`` (0 to 1) scales every change: 0 gives the images back as float32.
    """
    import tensorflow as tf

    geometry, photometry = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    images = tf.cast(images, tf.float32)
    strength = tf.cast(strength, tf.float32)
    images = _transform(images, geometry, p, strength)
    return _photometric(images, photometry, p, strength)


def _uniform(
    n: tf.Tensor, seed: tf.Tensor, low: float, high: float, strength: tf.Tensor
) -> tf.Tensor:
    import tensorflow as tf

    return tf.random.stateless_uniform([n], seed=seed, minval=low, maxval=high) * strength


def _transform(
    images: tf.Tensor, seed: tf.Tensor, p: TrainParams, strength: tf.Tensor
) -> tf.Tensor:
    """One projective transform per image about its centre; edges repeat into new margins."""
    import tensorflow as tf

    n = tf.shape(images)[0]
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 8))
    angle = _uniform(n, seeds[0], -1, 1, strength) * (p.augment_rotate * math.pi / 180)
    shear = _uniform(n, seeds[1], -p.augment_shear, p.augment_shear, strength)
    zoom = 1 + _uniform(n, seeds[2], -p.augment_scale, p.augment_scale, strength)
    # Squeeze narrows only: width scaled by 1 / (1 + u), u in [0, squeeze].
    squeeze = 1 / (1 + _uniform(n, seeds[3], 0, p.augment_squeeze, strength))
    dx = _uniform(n, seeds[4], -p.augment_shift, p.augment_shift, strength) * width
    dy = _uniform(n, seeds[5], -p.augment_shift, p.augment_shift, strength) * height
    # Perspective: the horizon tilts by up to ``warp`` of the image per pixel side.
    px = _uniform(n, seeds[6], -p.augment_warp, p.augment_warp, strength) / width
    py = _uniform(n, seeds[7], -p.augment_warp, p.augment_warp, strength) / height

    cos, sin, one = tf.cos(angle), tf.sin(angle), tf.ones([n])
    sx, sy = zoom * squeeze, zoom
    # Forward map (input -> output) about the centre (cx, cy): rotate(shear(scale)).
    a, b = sx * cos, sy * (shear * cos - sin)
    c, d = sx * sin, sy * (shear * sin + cos)
    cx, cy = width / 2, height / 2
    forward = tf.reshape(
        tf.stack(
            [
                a,
                b,
                cx + dx - a * cx - b * cy,
                c,
                d,
                cy + dy - c * cx - d * cy,
                px,
                py,
                one - px * cx - py * cy,
            ],
            axis=1,
        ),
        [n, 3, 3],
    )
    # The op maps each output pixel back to the input: the inverse, normalised.
    inverse = tf.linalg.inv(forward)
    inverse = inverse / inverse[:, 2:3, 2:3]
    transforms = tf.reshape(inverse, [n, 9])[:, :8]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )


def _photometric(
    images: tf.Tensor, seed: tf.Tensor, p: TrainParams, strength: tf.Tensor
) -> tf.Tensor:
    """Blur, contrast and Gaussian noise, each of a random strength per image."""
    import tensorflow as tf

    n = tf.shape(images)[0]
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    if p.augment_blur:
        # A 3x3 binomial blur mixed in by a random share: softer edges, same text.
        kernel = tf.constant([1.0, 2.0, 1.0])
        kernel = tf.tensordot(kernel, kernel, axes=0) / 16.0
        channels = tf.shape(images)[3]
        kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
        blurred = tf.nn.depthwise_conv2d(
            tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC"),
            kernel,
            strides=[1, 1, 1, 1],
            padding="VALID",
        )
        share = _uniform(n, seeds[0], 0, p.augment_blur, strength)[:, None, None, None]
        images = images + share * (blurred - images)
    if p.augment_contrast:
        factor = 1 + _uniform(n, seeds[1], -p.augment_contrast, p.augment_contrast, strength)
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = mean + (images - mean) * factor[:, None, None, None]
    if p.augment_noise:
        sigma = _uniform(n, seeds[2], 0, p.augment_noise, strength)[:, None, None, None]
        images = images + sigma * tf.random.stateless_normal(tf.shape(images), seed=seeds[3])
    return tf.clip_by_value(images, 0.0, 255.0)
