"""Training-image augmentation (core/augment.py) in the tf.data feed: training images only."""

import numpy as np
import pytest

from captcha_ocr.config import TrainParams
from captcha_ocr.core.augment import augment_batch
from captcha_ocr.core.images import decode_image
from captcha_ocr.core.model import build_training_model
from captcha_ocr.core.recipe import AugmentOffThePlateau, training_inputs

# Every augmentation off but the squeeze: its own tests below.
ONLY_SQUEEZE = {
    "augment_rotate": 0.0,
    "augment_shear": 0.0,
    "augment_shift": 0.0,
    "augment_scale": 0.0,
    "augment_warp": 0.0,
    "augment_contrast": 0.0,
    "augment_noise": 0.0,
    "augment_blur": 0.0,
}


def ink_columns(image: np.ndarray) -> int:
    """How many columns hold dark pixels (text and noise lines)."""
    return int((image < 100).any(axis=0).sum())


def ink_box(image: np.ndarray) -> np.ndarray:
    """(left, right, top, bottom) of the dark pixels."""
    rows, cols = np.nonzero(image < 100)
    return np.array([cols.min(), cols.max(), rows.min(), rows.max()])


def coarse(image: np.ndarray) -> np.ndarray:
    """Mean of each 5x5 block, flattened: small shifts and noise wash out."""
    return image.reshape(10, 5, 40, 5).mean(axis=(1, 3)).ravel()


def real_captchas(captcha_pngs) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([decode_image(png, 50, 200) for png in captcha_pngs.values()])
    # Any distinct label per image will do: label i belongs to image i.
    labels = np.arange(len(images), dtype="int32")[:, None].repeat(5, axis=1)
    return images, labels


def epoch(images, labels, params) -> dict[int, np.ndarray]:
    """One epoch of the feed: label index -> the image as fed, (H, W, C) float."""
    return {
        int(label[0]): image
        for x, y in training_inputs(images, labels, params)["x"]
        for image, label in zip(x.numpy(), y.numpy(), strict=True)
    }


def test_without_augmentation_fit_gets_the_arrays():
    images = np.zeros((4, 50, 200), dtype="uint8")
    labels = np.ones((4, 5), dtype="int32")
    inputs = training_inputs(images, labels, TrainParams(batch_size=2, augment=False))
    assert inputs["x"].shape == (4, 50, 200, 1)
    assert inputs["y"] is labels
    assert inputs["batch_size"] == 2 and inputs["shuffle"] is True


def test_the_default_changes_every_training_image_and_keeps_shape_and_label(captcha_pngs):
    images, labels = real_captchas(captcha_pngs)
    fed = epoch(images, labels, TrainParams(batch_size=5))
    assert sorted(fed) == list(range(len(images)))  # every image once, with its label
    for k, image in fed.items():
        assert image.shape == (50, 200, 1) and image.dtype == np.float32
        assert image.min() >= 0 and image.max() <= 255
        assert np.abs(image[..., 0] - images[k]).mean() > 1  # changed
        # Still the same captcha: at 1/5 of the size, whatever its contrast, it
        # matches its own original better than all but at most one other (two
        # captchas of this set can share most of their ink's layout).
        match = [np.corrcoef(coarse(image[..., 0]), coarse(other))[0, 1] for other in images]
        assert match[k] >= sorted(match)[-2]


def test_text_stays_in_the_frame_at_the_default_strengths(captcha_pngs):
    images, labels = real_captchas(captcha_pngs)
    params = TrainParams(batch_size=12, augment_noise=0.0)  # noise would speckle the box
    moved = []
    batches = training_inputs(images, labels, params)["x"]
    for _ in range(4):  # four epochs, four draws per image
        for x, y in batches:
            for image, label in zip(x.numpy()[..., 0], y.numpy(), strict=True):
                moved.append(np.abs(ink_box(image) - ink_box(images[label[0]])))
    moved = np.array(moved)
    # At most 10% of the width sideways and 20% of the height up or down:
    # shift 3%, scale 5%, 3 degrees, shear 0.15 and warp 3% add up to less.
    assert moved[:, :2].max() <= 20, moved[:, :2].max()
    assert moved[:, 2:].max() <= 10, moved[:, 2:].max()
    assert moved.max() > 0


def test_a_seeded_feed_is_repeatable_and_each_epoch_new(captcha_pngs):
    images, labels = real_captchas(captcha_pngs)
    params = TrainParams(batch_size=4, seed=7)
    first = training_inputs(images, labels, params)["x"]
    again = training_inputs(images, labels, params)["x"]
    one, two = list(first), list(first)  # two epochs of the same feed
    repeated = list(again)
    for (x1, y1), (x2, y2) in zip(one, repeated, strict=True):
        assert np.array_equal(y1.numpy(), y2.numpy())
        assert np.array_equal(x1.numpy(), x2.numpy())
    by_label = [
        {int(y[0]): x for xs, ys in e for x, y in zip(xs.numpy(), ys.numpy(), strict=True)}
        for e in (one, two)
    ]
    assert all(not np.array_equal(by_label[0][k], by_label[1][k]) for k in by_label[0])
    other_seed = list(training_inputs(images, labels, TrainParams(batch_size=4, seed=8))["x"])
    assert not np.array_equal(one[0][0].numpy(), other_seed[0][0].numpy())


@pytest.mark.parametrize("channels", [1, 3])
def test_any_number_of_channels_is_augmented_alike(channels, captcha_pngs):
    images, _ = real_captchas(captcha_pngs)
    grey = images[:4, ..., None].astype("float32")
    batch = np.repeat(grey, channels, axis=-1)
    out = augment_batch(batch, np.array([1, 2]), TrainParams()).numpy()
    assert out.shape == batch.shape and out.dtype == np.float32
    assert np.abs(out - batch).mean() > 1
    # Noise is drawn per pixel and channel; the rest is the same for every channel.
    out = augment_batch(batch, np.array([1, 2]), TrainParams(augment_noise=0.0)).numpy()
    for c in range(channels):
        assert np.allclose(out[..., c], out[..., 0], atol=1e-3)
    colour = np.concatenate([grey, 255 - grey, grey / 2], axis=-1)
    out = augment_batch(colour, np.array([1, 2]), TrainParams(augment_noise=0.0)).numpy()
    assert out.shape == colour.shape
    assert not np.allclose(out[..., 0], out[..., 1])  # channels kept apart


def test_validation_images_never_go_through_the_feed(captcha_pngs):
    """Only training_inputs augments: the network and what it reads at validation are untouched."""
    images, _ = real_captchas(captcha_pngs)
    plain = build_training_model(TrainParams(augment=False), 50, 200, 20)
    augmented = build_training_model(TrainParams(), 50, 200, 20)
    assert [layer.name for layer in augmented.layers] == [layer.name for layer in plain.layers]
    augmented.set_weights(plain.get_weights())
    # Inference on the same images gives the same logits: no random layer in the network.
    x = images[:3, ..., None]
    assert np.array_equal(plain.predict(x, verbose=0), augmented(x, training=False).numpy())


def test_squeeze_narrows_each_image_and_keeps_its_label(captcha_pngs):
    images, labels = real_captchas(captcha_pngs)
    params = TrainParams(augment_squeeze=0.3, batch_size=5, seed=4, **ONLY_SQUEEZE)
    batches = list(training_inputs(images, labels, params)["x"])

    assert [len(x) for x, _ in batches] == [5, 5, 2]  # every image once per epoch
    row_ink = [(255 - image.astype("float32")).sum(axis=1) for image in images]
    seen = []
    for x, y in batches:
        for squeezed, label in zip(x.numpy()[..., 0], y.numpy(), strict=True):
            original = images[label[0]]
            seen.append(int(label[0]))
            assert squeezed.shape == original.shape
            # Narrower or as wide, never wider, and at most by the squeeze.
            assert (
                ink_columns(original) / 1.3 - 2
                <= ink_columns(squeezed)
                <= ink_columns(original) + 1
            )
            # Height untouched: the ink per row keeps its profile, which
            # matches the image the label came with better than any other.
            match = [np.corrcoef((255 - squeezed).sum(axis=1), ink)[0, 1] for ink in row_ink]
            assert int(np.argmax(match)) == label[0]
    assert sorted(seen) == list(range(len(images)))
    narrowed = [
        ink_columns(x) < ink_columns(images[y[0]]) - 5
        for xs, ys in batches
        for x, y in zip(xs.numpy()[..., 0], ys.numpy(), strict=True)
    ]
    assert sum(narrowed) >= len(images) // 3


def test_augmentation_waits_until_the_model_reads(captcha_pngs):
    import tensorflow as tf

    images, labels = real_captchas(captcha_pngs)
    strength = tf.Variable(0.0, trainable=False)
    params = TrainParams(batch_size=12)
    feed = training_inputs(images, labels, params, strength)["x"]
    callback = AugmentOffThePlateau(strength)

    def changed() -> bool:
        x, y = next(iter(feed))
        return not np.array_equal(x.numpy()[..., 0], images[y.numpy()[:, 0]])

    assert not changed()  # on the plateau: the images as they are
    callback.on_epoch_end(0, {"val_cer": 0.8})
    assert not changed()
    callback.on_epoch_end(1, {"val_cer": 0.45})  # reads: augmented from the next epoch on
    assert changed()
