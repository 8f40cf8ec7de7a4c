"""The pyfunc reader's input checks: each bad payload gets a 400-class error."""

import base64

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from captcha_ocr.serving.pyfunc import decode_batch
from captcha_ocr.serving.uploads import MAX_BATCH, encode_image


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_real_images_of_any_size_decode(captcha_pngs):
    frame = pd.DataFrame({"image": [encode_image(d) for d in captcha_pngs.values()]})
    batch = decode_batch(frame, 50, 200)
    assert batch.shape == (len(captcha_pngs), 50, 200)
    assert decode_batch(frame, 32, 128).shape == (len(captcha_pngs), 32, 128)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "empty batch"),
        (["!!not base64!!"], "row 0: not valid base64"),
        ([b64(b"plain text, not an image")], "row 0: not a readable image"),
        ([""], "row 0: empty"),
    ],
)
def test_bad_payloads_are_400s_that_name_the_row(values, message):
    with pytest.raises(MlflowException, match=message) as caught:
        decode_batch(pd.DataFrame({"image": pd.Series(values, dtype=object)}), 50, 200)
    assert caught.value.get_http_status_code() == 400


def test_missing_column_and_oversized_batch(captcha_pngs):
    with pytest.raises(MlflowException, match="column 'image'"):
        decode_batch(pd.DataFrame({"img": ["x"]}), 50, 200)
    one = encode_image(next(iter(captcha_pngs.values())))
    with pytest.raises(MlflowException, match=f"limit {MAX_BATCH}"):
        decode_batch(pd.DataFrame({"image": [one] * (MAX_BATCH + 1)}), 50, 200)


def test_oversized_image_is_refused_before_decoding(monkeypatch, captcha_pngs):
    import captcha_ocr.serving.uploads as uploads

    monkeypatch.setattr(uploads, "MAX_IMAGE_BYTES", 100)
    frame = pd.DataFrame({"image": [encode_image(next(iter(captcha_pngs.values())))]})
    with pytest.raises(MlflowException, match="limit 100"):
        decode_batch(frame, 50, 200)


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(captcha_pngs):
    import io

    from PIL import Image

    from captcha_ocr.serving.uploads import MAX_IMAGE_PIXELS

    buffer = io.BytesIO()  # 46 KB of PNG, 40 MB once decoded to RGBA
    Image.new("RGBA", (3160, 3160), (0, 0, 0, 0)).save(buffer, format="PNG")
    good = encode_image(next(iter(captcha_pngs.values())))
    frame = pd.DataFrame({"image": [good, encode_image(buffer.getvalue())]})
    message = f"row 1: image of 3160x3160 pixels, limit {MAX_IMAGE_PIXELS} pixels"
    with pytest.raises(MlflowException, match=message) as caught:
        decode_batch(frame, 50, 200)
    assert caught.value.get_http_status_code() == 400
