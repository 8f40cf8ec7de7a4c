"""Which checkpoint a training may resume: the key follows params and data."""

from captcha_ocr.config import TrainParams
from captcha_ocr.steps.checkpoints import Checkpoint, checkpoint_key


def test_key_changes_with_any_train_param_or_data_byte(tmp_path):
    data = tmp_path / "train.npz"
    data.write_bytes(b"arrays")
    key = checkpoint_key(TrainParams(), [data])
    assert checkpoint_key(TrainParams(), [data]) == key
    assert checkpoint_key(TrainParams(learning_rate=3e-3), [data]) != key
    assert checkpoint_key(TrainParams(epochs=101), [data]) != key
    data.write_bytes(b"arrayz")
    assert checkpoint_key(TrainParams(), [data]) != key


def test_checkpoints_of_other_params_are_dropped(tmp_path):
    old = Checkpoint("old", root=tmp_path)
    (old.folder).mkdir(parents=True)
    (old.folder / "state.json").write_text('{"epoch": 3}')
    current = Checkpoint("new", root=tmp_path)
    current.folder.mkdir()
    assert current.drop_others() == [old.folder]
    assert not old.folder.exists() and current.folder.exists()
    assert current.load() is None
    assert old.load() is None
