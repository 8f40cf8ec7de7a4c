"""Bad options for ``captcha-ocr demo``: refused by name before the model loads."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import assert_refused

CASES = {
    "gallery is a file": (["--gallery", "params.yaml"], "--gallery params.yaml: not a folder"),
    "gallery is missing": (["--gallery", "nowhere"], "--gallery nowhere: no such folder"),
    "port over 65535": (["--port", "99999"], "--port 99999: not a TCP port"),
    "negative port": (["--port", "-1"], "--port -1: not a TCP port"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_option_is_named(project, case):
    args, message = CASES[case]
    before = project.checksums()
    result = project.run("demo", *args)
    assert_refused(result, message, before=before, after=project.checksums())
