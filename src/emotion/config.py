"""params.yaml, the single home of configuration: parsed into typed dataclasses and validated on load.

Every key must be present (no hidden defaults in code); an unknown or misspelled key, a missing key
or a value of the wrong type stops with one line that names the key.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from emotion.errors import EmotionError

ModelName = Literal["cnn_small", "vgg"]


@dataclass(frozen=True)
class DownloadParams:
    source: str  # Kaggle handle (owner/dataset) or a local zip / extracted folder


@dataclass(frozen=True)
class ManifestParams:
    blank_std_max: float  # images whose pixel standard deviation is below this are flagged near-blank
    samples_per_class: int  # columns of the sample-grid plot


@dataclass(frozen=True)
class SplitParams:
    seed: int
    val_fraction: float
    drop_eval_duplicates: bool  # drop training images whose pixels equal a val/test image
    drop_near_blank: bool  # drop near-blank training images


@dataclass(frozen=True)
class PreprocessParams:
    image_size: int


@dataclass(frozen=True)
class AugmentParams:
    flip: bool
    rotation: float  # fraction of a full turn, as keras.layers.RandomRotation
    shift: float  # fraction of the image size
    zoom: float
    contrast: float
    erasing: float  # probability of RandomErasing; 0 disables it


@dataclass(frozen=True)
class TrainParams:
    model: ModelName
    width: int  # channels of the first block; later blocks double it
    head: Literal["dense", "gap"]
    dropout: float
    epochs: int
    batch_size: int
    optimizer: Literal["adamw", "sgd"]
    lr: float
    weight_decay: float
    schedule: Literal["cosine", "plateau", "constant"]
    warmup_epochs: int
    label_smoothing: float
    class_weight: Literal["none", "sqrt", "balanced"]
    patience: int  # early stopping on validation accuracy
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"]
    seed: int
    augment: AugmentParams


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int
    tta_flip: bool
    misclassified: int  # images in the misclassified-examples grid


@dataclass(frozen=True)
class ExportParams:
    formats: list[Literal["saved_model", "onnx", "onnx_int8", "tflite"]]
    parity_images: int
    calibration_images: int  # validation images that calibrate the int8 ONNX model


@dataclass(frozen=True)
class Params:
    download: DownloadParams
    manifest: ManifestParams
    split: SplitParams
    preprocess: PreprocessParams
    train: TrainParams
    evaluate: EvaluateParams
    export: ExportParams


def load_params(path: str | Path = "params.yaml", overrides: dict | None = None) -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmotionError(f"{path}: not found; run from the repository root") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise EmotionError(f"{path}:{where} is not valid YAML ({getattr(err, 'problem', err)})") from None
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    return parse(Params, raw, str(path), "")


def to_dict(params) -> dict:
    return dataclasses.asdict(params)


def parse(cls, data, source: str, prefix: str):
    """Build dataclass `cls` from `data`, checking keys and types recursively."""
    where = prefix.rstrip(".") or "top level"
    if not isinstance(data, dict):
        raise EmotionError(f"{source}: '{where}' must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known keys: {', '.join(fields)}"
            raise EmotionError(f"{source}: unknown key '{prefix}{key}'{hint}")
    values = {}
    for name in fields:
        if name not in data:
            raise EmotionError(f"{source}: missing key '{prefix}{name}'")
        values[name] = _check(hints[name], data[name], source, f"{prefix}{name}")
    return cls(**values)


def _check(hint, value, source: str, key: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, source, key + ".")
    if origin is Literal:
        if value not in typing.get_args(hint):
            options = ", ".join(map(str, typing.get_args(hint)))
            raise EmotionError(f"{source}: '{key}' is {value!r}; choose one of: {options}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise EmotionError(f"{source}: '{key}' must be a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_check(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise EmotionError(f"{source}: '{key}' must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EmotionError(f"{source}: '{key}' must be an integer, got {value!r}")
        return value
    if hint is float:
        # YAML 1.1 (PyYAML) reads `1e-4` as a string; `dvc exp run -S train.lr=1e-4` writes that form.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EmotionError(f"{source}: '{key}' must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise EmotionError(f"{source}: '{key}' must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported type {hint} for {key}")


def _set_dotted(raw: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def set_param(path: str | Path, dotted: str, text_value: str) -> None:
    """Change one key of params.yaml in place, keeping comments, after validating the result."""
    from ruamel.yaml import YAML

    from emotion.fileio import atomic_path

    path = Path(path)
    rt = YAML()
    rt.preserve_quotes = True
    doc = rt.load(path.read_text(encoding="utf-8"))
    value = yaml.safe_load(text_value) if text_value else text_value
    _set_dotted(doc, dotted, value)
    parse(Params, _plain(doc), str(path), "")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        rt.dump(doc, handle)


def _plain(node):
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node
