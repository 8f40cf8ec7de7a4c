"""Bad params and data for ``captcha-ocr preprocess``: refused by name, nothing lost.

Preprocess writes four outputs (splits, arrays, vocabulary, data report); a
refusal or a failure half-way must leave all of them as they were.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.hostile.conftest import assert_refused

# (params.yaml text for preprocess keys, what the message must name)
BAD_PARAMS = {
    "label_length_1e9": ({"max_label_length": "1000000000"}, "preprocess.max_label_length"),
    "label_length_float": ({"max_label_length": "1.0e+9"}, "preprocess.max_label_length"),
    "huge_resize": (
        {"image_height": "100000", "image_width": "100000", "wrong_size": "resize"},
        "image_height",
    ),
    "tall_resize": ({"image_height": "5000", "wrong_size": "resize"}, "image_height"),
    "wide_resize": ({"image_width": "100000", "wrong_size": "resize"}, "image_width"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_PARAMS))
def test_params_that_cannot_fit_in_memory_are_refused_by_key(project, case):
    values, named = BAD_PARAMS[case]
    for key, text in values.items():
        project.set_param_text("preprocess", key, text)
    before = project.checksums()
    result = project.run("preprocess")
    assert_refused(result, named, before=before, after=project.checksums())


@pytest.mark.slow
def test_too_many_rejections_keep_the_old_outputs_and_say_why(project):
    # Every captcha has 5 characters: all of them are rejected, so no training
    # image is left to read the auto params from.
    project.set_params("preprocess", min_label_length=6, max_label_length=6)
    before = project.checksums()
    result = project.run("preprocess")
    assert_refused(
        result,
        "936 of 936 files rejected, and none left in the training split",
        "label length 5 outside 6-6",
        before=before,
        after=project.checksums(),
    )
    # Every reason is in a file outside the project's outputs, named in the message.
    listed = Path(result.stderr.strip().rpartition(" reasons in ")[2])
    assert len(json.loads(listed.read_text())) == 936
    listed.unlink()


@pytest.mark.slow
def test_a_failure_half_way_keeps_every_old_output(project):
    # Other fractions give new splits; a file where the arrays folder belongs makes
    # the step fail after it has written the first split.
    project.set_params("preprocess", val_fraction=0.2)
    shutil.rmtree(project.root / "data/prepared")
    (project.root / "data/prepared").write_text("in the way")
    before = project.checksums()
    result = project.run("preprocess")
    assert_refused(result, "data/prepared", before=before, after=project.checksums())
