"""Opening ``.pt2`` archives safely: refuse anything whose loading would unpickle objects or run code.

``torch.export.load`` falls back to full unpickling for some payloads, so every archive is
inspected as a zip first: pickled weights or constants, custom objects, non-tensor sample
inputs and compiled (AOTInductor, ExecuTorch, MTIA) code are refused with an InputError.

Example:
    >>> path = existing_file("pruned.pt2")
    >>> check_archive(path)                   # raises InputError on an unsafe archive
    >>> with open_archive(path) as archive:
    ...     names = archive.namelist()
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError

__all__ = ["check_archive", "existing_file", "open_archive"]


def existing_file(path: str | Path) -> Path:
    """``path`` as a Path; InputError if it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: '{path}'")
    return path


@contextlib.contextmanager
def open_archive(path: Path) -> Iterator[zipfile.ZipFile]:
    """The archive as a zip; InputError if it is not one."""
    try:
        with zipfile.ZipFile(path) as archive:
            yield archive
    except zipfile.BadZipFile as error:
        raise InputError(f"'{path}' is not a .pt2 archive (written by fxprune.save or torch.export.save)") \
            from error


def check_archive(path: Path) -> None:
    """Refuse archives whose loading would unpickle objects or run compiled code."""
    with open_archive(path) as archive:
        names = archive.namelist()
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1 or f"{roots.pop()}/archive_format" not in names:
            raise InputError(f"'{path}' is not a .pt2 archive written by torch.export.save (torch >= 2.7)")
        for name in names:
            inner = name.split("/", 1)[-1]
            if inner.startswith(("data/aotinductor/", "data/executorch/", "data/mtia")) \
                    or (inner.startswith(("data/weights/", "data/constants/")) and inner.endswith(".pt")):
                _refuse(path, f"it contains '{inner}'")
            if inner.startswith(("data/weights/", "data/constants/")) and inner.endswith("_config.json"):
                _check_payloads(path, json.loads(archive.read(name)))
            if inner.startswith("data/sample_inputs/"):
                _check_pickle(path, archive.read(name), inner)


def _check_payloads(path: Path, config: dict[str, Any]) -> None:
    for fqn, payload in config.get("config", {}).items():
        if payload.get("use_pickle") or str(payload.get("path_name", "")).startswith(("custom_obj_", "opaque_obj_")):
            _refuse(path, f"'{fqn}' is stored as a pickled object")


def _check_pickle(path: Path, data: bytes, name: str) -> None:
    if not data:
        return
    try:  # torch.export.load retries this with weights_only=False: only let safe pickles through
        torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - unpickling a foreign file raises anything
        _refuse(path, f"'{name}' is not a plain tensor pickle ({type(error).__name__})")


def _refuse(path: Path, why: str) -> None:
    raise InputError(f"refusing to load '{path}': {why}, which could run arbitrary code. Re-save the model "
                     "with fxprune.save, which writes plain tensors only.")
