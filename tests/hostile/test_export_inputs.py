"""An export that fails after writing files keeps the last good export whole."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import assert_refused


@pytest.mark.slow
def test_a_registry_that_cannot_be_reached_keeps_the_old_export(project):
    before = project.checksums()
    # Nothing listens on port 9: export writes its files, then cannot register them.
    result = project.run("export", env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    assert_refused(result, "127.0.0.1:9", before=before, after=project.checksums())
