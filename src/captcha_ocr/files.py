"""Atomic file writes: a killed step leaves the old file or none, never half of one.

A step with several outputs wraps its writes in ``all_or_nothing()``: every
write inside it lands beside its target under a hidden name, and all of them are
moved into place only when the block ends without an error. A step that fails
half-way therefore leaves every old output as it was, not a mix of old and new.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# (temporary, target) pairs waiting for the enclosing all_or_nothing() to end.
_pending: ContextVar[list[tuple[Path, Path]] | None] = ContextVar("_pending", default=None)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _honour_umask(path: Path, mode: int) -> None:
    # mkstemp and mkdtemp create owner-only files; a container running as another
    # user must be able to read what a step wrote, as with a plain open().
    path.chmod(mode & ~_umask())


@contextmanager
def all_or_nothing() -> Iterator[None]:
    """Hold back every atomic write in the block; move them all in only on success.

    Nested blocks join the outermost one. The moves themselves are renames, so
    the window in which a crash leaves a mix is the few microseconds between them.
    """
    if _pending.get() is not None:
        yield
        return
    pending: list[tuple[Path, Path]] = []
    token = _pending.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            _remove(tmp)
        raise
    finally:
        _pending.reset(token)
    for tmp, target in pending:
        _swap(tmp, target)


def _hand_over(tmp: Path, target: Path) -> bool:
    """Queue ``tmp`` for the enclosing all_or_nothing(); False when there is none."""
    pending = _pending.get()
    if pending is None:
        return False
    for i, (old_tmp, old_target) in enumerate(pending):
        if old_target == target:  # written twice: the later write wins
            _remove(old_tmp)
            del pending[i]
            break
    pending.append((tmp, target))
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _swap(tmp: Path, target: Path) -> None:
    if tmp.is_dir() and target.exists():
        # A folder cannot replace a folder in one rename: move the old one aside first.
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
        target.replace(old / "x")
        tmp.replace(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.replace(target)


@contextmanager
def atomic_path(target: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place on success.

    Writers that want a file name (``np.savez``, ``model.save``, matplotlib)
    write to the yielded path. The temporary name keeps ``suffix`` because some
    writers choose their format by extension.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=suffix or target.suffix
    )
    os.close(fd)
    tmp_path = Path(tmp)
    _honour_umask(tmp_path, 0o666)
    handed_over = False
    try:
        yield tmp_path
        handed_over = _hand_over(tmp_path, target)
        if not handed_over:
            tmp_path.replace(target)
    finally:
        if not handed_over:
            tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(target: Path | str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; swap it in on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    _honour_umask(tmp, 0o777)
    handed_over = False
    try:
        yield tmp
        handed_over = _hand_over(tmp, target)
        if not handed_over:
            _swap(tmp, target)
    finally:
        if not handed_over:
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path | str, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def write_with(path: Path | str, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result to ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)


def read_text_table(path: Path | str) -> pd.DataFrame:
    """A CSV the pipeline wrote, every cell as text: a label "NA", "null" or "nan" stays a label."""
    import pandas as pd  # here, so that ingest never loads it

    return pd.read_csv(path, dtype=str, keep_default_na=False)
