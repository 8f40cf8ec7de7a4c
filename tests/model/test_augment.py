"""``train.augment_squeeze``: training images narrowed at random, labels kept."""

import numpy as np

from captcha_ocr.config import TrainParams
from captcha_ocr.core.images import decode_image
from captcha_ocr.core.model import build_training_model
from captcha_ocr.core.recipe import training_inputs


def ink_columns(image: np.ndarray) -> int:
    """How many columns hold dark pixels (text and noise lines)."""
    return int((image < 100).any(axis=0).sum())


def real_captchas(captcha_pngs) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([decode_image(png, 50, 200) for png in captcha_pngs.values()])
    # Any distinct label per image will do: label i belongs to image i.
    labels = np.arange(len(images), dtype="int32")[:, None].repeat(5, axis=1)
    return images, labels


def test_without_augmentation_fit_gets_the_arrays():
    images = np.zeros((4, 50, 200), dtype="uint8")
    labels = np.ones((4, 5), dtype="int32")
    inputs = training_inputs(images, labels, TrainParams(batch_size=2))
    assert inputs["x"].shape == (4, 50, 200, 1)
    assert inputs["y"] is labels
    assert inputs["batch_size"] == 2 and inputs["shuffle"] is True


def test_squeeze_narrows_each_image_and_keeps_its_label(captcha_pngs):
    images, labels = real_captchas(captcha_pngs)
    params = TrainParams(augment_squeeze=0.3, batch_size=5, seed=4)
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


def test_squeeze_differs_from_epoch_to_epoch(captcha_pngs):
    images, labels = real_captchas(captcha_pngs)
    batches = training_inputs(images, labels, TrainParams(augment_squeeze=0.3, batch_size=12))["x"]
    first, second = (next(iter(batches)) for _ in range(2))
    by_label = [dict(zip(y.numpy()[:, 0], x.numpy(), strict=True)) for x, y in (first, second)]
    assert any(not np.array_equal(by_label[0][k], by_label[1][k]) for k in by_label[0])


def test_squeeze_leaves_the_network_alone():
    plain = build_training_model(TrainParams(), 50, 200, 20)
    augmented = build_training_model(TrainParams(augment_squeeze=0.2), 50, 200, 20)
    assert [layer.name for layer in augmented.layers] == [layer.name for layer in plain.layers]
