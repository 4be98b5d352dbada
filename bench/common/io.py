"""Atomic writes and safe checkpoint loading."""
from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import nn

from bench.common.errors import BenchError


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it and put it back
    os.umask(mask)
    return mask


# mkstemp makes 0600 files; a result shared with a group must get the mode open() would give it
_FILE_MODE = 0o666 & ~_umask()


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def atomic_write_text(path: Path, text: str) -> None:
    _atomic(path, lambda fh: fh.write(text.encode()))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda fh: fh.write(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save(obj: Any, path: Path) -> None:
    _atomic(path, lambda fh: torch.save(obj, fh))


def load_checkpoint(path: Path | str) -> Any:
    """torch.load with weights_only=True; any failure becomes one clear BenchError."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            AttributeError, TypeError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BenchError(f"checkpoint {path} is not a readable PyTorch weights file "
                         f"(truncated, not a torch file, or holds more than weights): {first[:160]}") from None


_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "student")


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """Accept a bare state_dict or one wrapped under a common key; strip DataParallel's 'module.'."""
    for key in _WRAPPER_KEYS:
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BenchError("checkpoint does not hold a state_dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def load_weights(model: nn.Module, path: Path | str, arch: str) -> nn.Module:
    state = extract_state_dict(load_checkpoint(path))
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of another shape (e.g. {k}: {tuple(state[k].shape)} vs "
                         f"{tuple(own[k].shape)})")
        raise BenchError(f"checkpoint {path} does not fit architecture {arch}: {'; '.join(parts)} keys")
    model.load_state_dict(state)
    return model


def lock_for(path: Path, timeout: float = -1) -> FileLock:
    """The lock that makes one process at a time own ``path`` (a run folder, a teacher, a manifest).
    It lives in ``.locks/`` beside the path, so removing the folder (``--force``) keeps the lock."""
    path = Path(path)
    (path.parent / ".locks").mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.parent / ".locks" / path.name) + ".lock", timeout=timeout)
