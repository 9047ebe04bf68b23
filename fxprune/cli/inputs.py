"""What the ``fxprune`` command turns its arguments into: models, weights, inputs, ratios, plans, capture.

Every user mistake becomes an :class:`~fxprune.errors.InputError` whose one-line message
says what was wrong and what to type instead; the CLI prints it and exits with status 2.

Example:
    >>> model = load_model("resnet18")                   # torchvision, weights=None
    >>> model = load_model("tests.cli_factory:tiny2d")   # package.module:factory
    >>> parse_shape("1,3,224,224"), parse_ratios(["0.5", "layer4.*=0.7"])
    ((1, 3, 224, 224), {'layer4.*': 0.7, '*': 0.5})
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import serialize
from ..errors import InputError
from ..passes.capture import FRONT_ENDS
from ..passes.plan import Plan, Ratios, check_ratio

__all__ = [
    "add_capture_arguments",
    "example_inputs",
    "load_calibration",
    "load_model",
    "load_plan",
    "load_weights",
    "nonnegative_int",
    "parse_ratios",
    "parse_session_entry",
    "parse_shape",
    "positive_float",
    "positive_int",
]

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".onnx", ".tar")
_MODEL_FORMS = "a torchvision model name, 'package.module:factory', or a .pt2 saved by fxprune"


def load_model(spec: str, weights: str | None = None) -> nn.Module:
    """The model named by ``spec``, in eval mode, with ``weights`` (a state dict file) loaded strictly.

    Raises:
        InputError: unknown name (with close matches), unimportable factory, unreadable
            or ill-fitting weights, or a ``.pt2`` given ``weights``.
    """
    if spec.endswith(".pt2"):
        if weights:
            raise InputError(f"--weights cannot be applied to '{spec}': a .pt2 archive holds its own weights")
        return serialize.load(spec)
    if ":" in spec and not Path(spec).exists():
        model = _from_factory(spec)
    elif spec.lower().endswith(_CHECKPOINT_SUFFIXES) or Path(spec).is_file():
        raise InputError(f"MODEL '{spec}' is a file but not a .pt2 archive: give the architecture as "
                         f"MODEL ({_MODEL_FORMS}) and the checkpoint with --weights {spec}")
    else:
        model = _from_torchvision(spec)
    if weights:
        load_weights(model, weights)
    return model.eval()


def _from_torchvision(name: str) -> nn.Module:
    import torchvision

    names = torchvision.models.list_models()
    if name not in names:
        close = difflib.get_close_matches(name.lower(), names, n=4, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else " (torchvision.models.list_models() lists them)"
        raise InputError(f"unknown model '{name}'{hint} MODEL is {_MODEL_FORMS}")
    return torchvision.models.get_model(name, weights=None)


def _from_factory(spec: str) -> nn.Module:
    model = _call(spec, "MODEL")
    if not isinstance(model, nn.Module):
        raise InputError(f"factory '{spec}' returned a {type(model).__name__}, not an nn.Module")
    return model


def load_calibration(spec: str) -> list[Any]:
    """``--calibration package.module:function``: the batches ``function()`` yields (a DataLoader's too)."""
    batches = _call(spec, "--calibration")
    try:
        return list(batches) if not isinstance(batches, torch.utils.data.DataLoader) else [b[0] for b in batches]
    except TypeError:
        raise InputError(f"--calibration '{spec}' returned a {type(batches).__name__}: return an iterable of "
                         "input batches (tensors or tuples of tensors) or a DataLoader of (inputs, labels)") from None


def _call(spec: str, label: str) -> Any:
    """Import ``package.module:function`` and call it without arguments."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute or not all(p.isidentifier() for p in module_name.split(".")):
        raise InputError(f"malformed {label} '{spec}': expected 'package.module:factory', e.g. 'mypkg.nets:build'")
    if os.getcwd() not in sys.path:  # the console script does not put the working folder on sys.path
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # a missing module, or an error inside the user's module
        raise InputError(f"cannot import '{module_name}' (from {label} '{spec}'): {type(error).__name__}: {error}; "
                         "run from the folder that contains it or install its package") from error
    factory = getattr(module, attribute, None)
    if not callable(factory):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        close = difflib.get_close_matches(attribute, public, n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; it has {', '.join(public[:8]) or 'none'}"
        raise InputError(f"'{module_name}' has no callable '{attribute}'{hint}")
    try:
        return factory()
    except Exception as error:  # the user's factory failed: say where, keep the cause for --debug
        raise InputError(f"factory '{spec}' failed: {type(error).__name__}: {error} "
                         "(re-run with --debug for the traceback)") from error


def load_weights(model: nn.Module, path: str) -> None:
    """Load a state dict file into ``model`` strictly (``weights_only=True``: no code runs).

    A raw state dict or a dict holding one under ``"state_dict"`` or ``"model"`` is
    accepted; a ``module.`` prefix left by ``DataParallel`` is removed.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"weights file not found: '{path}'")
    try:
        loaded = torch.load(file, weights_only=True, map_location="cpu")
    except Exception as error:  # not a torch file, or one holding arbitrary Python objects
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise InputError(f"cannot read weights '{path}' ({type(error).__name__}: {message}); only plain state "
                         "dicts load (torch.load with weights_only=True)") from error
    state = _state_dict(loaded, path)
    _check_fits(model, state, path)
    model.load_state_dict(state, strict=True)


def _state_dict(loaded: Any, path: str) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise InputError(f"weights '{path}' hold no state dict: expected {{name: tensor}}, or one under "
                         "'state_dict' or 'model'")
    state = {str(k): v for k, v in loaded.items()}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _check_fits(model: nn.Module, state: Mapping[str, torch.Tensor], path: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    problems = [f"{what} ({len(keys)}): {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}"
                for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                   ("shape mismatches", wrong)) if keys]
    if problems:
        raise InputError(f"weights '{path}' do not fit the model: {'; '.join(problems)}. "
                         "Is it a checkpoint of this architecture (and of the same num_classes)?")


def load_plan(path: str) -> Plan:
    """A plan from ``plan.json`` or from the metadata of a ``.pt2`` written by fxprune."""
    if not Path(path).is_file():
        raise InputError(f"plan file not found: '{path}'")
    plan = serialize.read_plan(path) if path.endswith(".pt2") else Plan.load(path)
    if plan is None:
        raise InputError(f"'{path}' stores no plan (it was saved from a module, not a CompileResult)")
    return plan


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` as ``(1, 3, 224, 224)``; argparse reports the ArgumentTypeError."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"malformed shape '{text}': expected comma-separated positive "
                                         "integers, e.g. 1,3,224,224")
    return tuple(int(p) for p in parts)


def parse_ratios(values: Sequence[str]) -> Ratios:
    """``--ratio`` values: one ``RATIO`` for every group and/or ``PATTERN=RATIO`` pairs (first match wins).

    Example:
        >>> parse_ratios(["layer4.*=0.7", "0.3"])
        {'layer4.*': 0.7, '*': 0.3}
    """
    default: float | None = None
    patterns: dict[str, float] = {}
    for value in values:
        pattern, has_pattern, number = value.rpartition("=")
        try:
            ratio = float(number)
        except ValueError:
            raise InputError(f"bad --ratio '{value}': expected a number in [0, 1) or PATTERN=RATIO, "
                             "e.g. --ratio 0.5 --ratio 'layer4.*=0.7'") from None
        check_ratio(ratio, f"--ratio '{value}'")
        if has_pattern and not pattern:
            raise InputError(f"bad --ratio '{value}': the pattern before '=' is empty")
        if not has_pattern and default is not None:
            raise InputError("--ratio without a pattern given twice: give one default ratio, and PATTERN=RATIO "
                             "for the rest")
        if has_pattern:
            patterns[pattern] = ratio
        else:
            default = ratio
    if not patterns:
        if default is None:
            raise InputError("give --ratio RATIO (e.g. 0.5) or --plan FILE")
        return default
    return {**patterns, "*": default} if default is not None else patterns


def example_inputs(shapes: Sequence[tuple[int, ...]] | None, as_list: bool, models: Sequence[str]) -> tuple[Any, ...]:
    """Random float inputs: one per shape, or one list of them; else the shapes a ``.pt2`` recorded."""
    if not shapes:
        for spec in models:
            if spec.endswith(".pt2") and Path(spec).is_file():
                return serialize.read_example_inputs(spec)
        raise InputError("--input-shape is required, e.g. --input-shape 1,3,224,224 (repeat it for models with "
                         "several inputs; add --input-list to pass them as one list)")
    generator = torch.Generator().manual_seed(0)
    tensors = [torch.randn(shape, generator=generator) for shape in shapes]
    return (tensors,) if as_list else tuple(tensors)


def _number(kind: type, text: str, low: float, strict: bool) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got '{text}'") from None
    if math.isnan(value) or value < low or (strict and value == low):
        raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got '{text}'")
    return value


def parse_session_entry(text: str) -> tuple[str, str]:
    """``--session-config KEY=VALUE``: one ONNX Runtime session entry.

    Example:
        >>> parse_session_entry("session.intra_op.allow_spinning=0")
        ('session.intra_op.allow_spinning', '0')
    """
    key, has_value, value = text.partition("=")
    if not has_value or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. session.intra_op.allow_spinning=0, got '{text}'")
    return key.strip(), value.strip()


def positive_int(text: str) -> int:
    return _number(int, text, 0, strict=True)


def nonnegative_int(text: str) -> int:
    return _number(int, text, 0, strict=False)


def positive_float(text: str) -> float:
    return _number(float, text, 0.0, strict=True)


def add_capture_arguments(sub: argparse.ArgumentParser) -> None:
    """``--capture`` and ``--no-check-capture``: every command that captures a model takes them."""
    sub.add_argument("--capture", choices=FRONT_ENDS, default="auto",
                     help="front end: symbolic tracing (fx), torch.export, or fx falling back to export (auto)")
    sub.add_argument("--no-check-capture", dest="check_capture", action="store_false",
                     help="skip comparing the captured graph with the model on the example inputs")
