"""params.yaml, the single home of configuration: parsed into typed dataclasses and validated on load.

Every key must be present (no hidden defaults in code); an unknown or misspelled key, a missing key
or a value of the wrong type stops with one line that names the key.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from emotion.errors import EmotionError

ModelName = Literal["cnn_small", "vgg", "resnet", "mobilenet", "efficientnetv2s", "resnet50v2", "vgg16"]
APPLICATIONS = ("efficientnetv2s", "resnet50v2", "vgg16")  # keras.applications backbones


@dataclass(frozen=True)
class DownloadParams:
    kaggle: str  # Kaggle handle (owner/dataset) that `emotion fetch` downloads when given no local archive


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
    crop: float  # random-resized crop: each side keeps 1-crop..1 of the image, resized back; 0 = off
    brightness: float  # RandomBrightness factor; 0 = off
    blur: float  # probability of a Gaussian blur (sigma 0.5-1.5 px) per image; 0 = off
    randaugment: int  # RandAugment operations per image; 0 = off
    mixup: float  # MixUp Beta(alpha, alpha); 0 = off
    cutmix: float  # CutMix Beta(alpha, alpha); 0 = off (with mixup too, each batch uses one of them)


@dataclass(frozen=True)
class TrainParams:
    model: ModelName
    width: int  # channels of the first block; later blocks double it (own models only)
    head: Literal["dense", "gap"]  # vgg only
    dense_units: int  # vgg dense head: units of its hidden layer
    weights: Literal["none", "imagenet"]  # keras.applications backbones only
    resize: int  # images are resized to this side inside the model (upsampling for pretrained backbones)
    input_crop: int  # the network sees input_crop × input_crop: a random window in training, the centre at
    #                  inference (ten-crop TTA: the corners too); = preprocess.image_size turns it off
    frozen_epochs: int  # first phase: epochs with the pretrained backbone frozen (0 = one phase)
    unfreeze_top: int  # second phase: train the top N backbone layers (0 = all; batch norm stays frozen)
    finetune_lr_factor: float  # second phase's lr = lr × this
    dropout: float
    epochs: int
    batch_size: int
    optimizer: Literal["adamw", "sgd"]
    lr: float
    weight_decay: float
    schedule: Literal["cosine", "onecycle", "plateau", "constant"]
    warmup_epochs: int
    label_smoothing: float
    recompute_bn: bool  # after training, batch-norm statistics from the training images, kept if val accuracy rises
    ema: float  # momentum of an exponential moving average of the weights, scored on val each epoch (0 = off)
    class_weight: Literal["none", "sqrt", "balanced"]
    sampling: Literal["shuffle", "balanced"]  # balanced: every class equally likely in each batch
    patience: int  # early stopping on validation accuracy after this many epochs without a new best (0 = off)
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"]
    devices: Literal["auto"] | int  # data-parallel over this many devices (JAX backend); auto = every accelerator
    seed: int
    augment: AugmentParams


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int
    tta: Literal["none", "flip", "tencrop"]  # tencrop: 4 corners + centre, and their mirrors
    tta_crop: float  # side of each ten-crop view as a fraction of the image
    misclassified: int  # images in the misclassified-examples grid


@dataclass(frozen=True)
class ExportParams:
    formats: list[Literal["saved_model", "onnx", "onnx_int8", "tflite"]]
    parity_images: int
    calibration_images: int  # validation images that calibrate the int8 ONNX model
    int8_max_accuracy_drop: float  # the export fails if int8 ONNX loses more val accuracy than this (0.005 = 0.5 points)


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
    return check_combinations(parse(Params, raw, str(path), ""), str(path))


def check_combinations(params: Params, source: str) -> Params:
    """Rules across keys, each a one-line error naming the key to change."""
    train = params.train
    if train.model not in APPLICATIONS:
        for key, value, default in (("weights", train.weights, "none"), ("frozen_epochs", train.frozen_epochs, 0)):
            if value != default:
                raise EmotionError(f"{source}: 'train.{key}' needs a keras.applications model "
                                   f"({', '.join(APPLICATIONS)}); set it to {default} for {train.model}")
    if train.frozen_epochs >= train.epochs and train.frozen_epochs:
        raise EmotionError(f"{source}: 'train.frozen_epochs' ({train.frozen_epochs}) must be below "
                           f"'train.epochs' ({train.epochs})")
    if train.resize < 32:
        raise EmotionError(f"{source}: 'train.resize' is {train.resize}; use 32 or more (48 = no resizing)")
    size = params.preprocess.image_size
    if not 16 <= train.input_crop <= size:
        raise EmotionError(f"{source}: 'train.input_crop' is {train.input_crop}; use 16..{size} "
                           f"('preprocess.image_size'; {size} = no cropping)")
    if train.devices != "auto" and train.devices < 1:
        raise EmotionError(f"{source}: 'train.devices' is {train.devices}; use auto or 1 or more")
    if train.patience < 0:
        raise EmotionError(f"{source}: 'train.patience' is {train.patience}; use 0 (no early stopping) or 1 or more")
    if not 0 <= train.augment.blur <= 1:
        raise EmotionError(f"{source}: 'train.augment.blur' is {train.augment.blur}; use a probability in [0, 1] (0 = off)")
    if not 0 <= train.ema < 1:
        raise EmotionError(f"{source}: 'train.ema' is {train.ema}; use 0 (off) or a momentum below 1, e.g. 0.999")
    if train.dense_units < 1:
        raise EmotionError(f"{source}: 'train.dense_units' is {train.dense_units}; use 1 or more (256 is the default)")
    if train.class_weight != "none" and train.sampling == "balanced":
        raise EmotionError(f"{source}: 'train.sampling: balanced' already evens out the classes; "
                           "set 'train.class_weight: none'")
    if not 0 <= params.export.int8_max_accuracy_drop <= 1:
        raise EmotionError(f"{source}: 'export.int8_max_accuracy_drop' is a fraction of accuracy in [0, 1] "
                           f"(0.005 = 0.5 points), got {params.export.int8_max_accuracy_drop}")
    if not 0 < params.evaluate.tta_crop <= 1:
        raise EmotionError(f"{source}: 'evaluate.tta_crop' must be in (0, 1], got {params.evaluate.tta_crop}")
    return params


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
    if origin in (typing.Union, types.UnionType):  # e.g. Literal["auto"] | int: the first option that fits
        for option in typing.get_args(hint):
            try:
                return _check(option, value, source, key)
            except EmotionError:
                pass
        kinds = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
        options = [", ".join(map(str, typing.get_args(o))) if typing.get_origin(o) is Literal else kinds[o]
                   for o in typing.get_args(hint)]
        raise EmotionError(f"{source}: '{key}' is {value!r}; use {' or '.join(options)}")
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
    """Change one key of params.yaml in place (value as YAML text), keeping comments."""
    set_params(path, {dotted: yaml.safe_load(text_value) if text_value else text_value})


def set_params(path: str | Path, values: dict) -> None:
    """Change several dotted keys of params.yaml in place, keeping comments; validates the result as a
    whole, so a set of related changes (e.g. configs/gpu.yaml) is checked together."""
    from ruamel.yaml import YAML

    from emotion.fileio import atomic_path

    path = Path(path)
    rt = YAML()
    rt.preserve_quotes = True
    doc = rt.load(path.read_text(encoding="utf-8"))
    for dotted, value in values.items():
        _set_dotted(doc, dotted, value)
    check_combinations(parse(Params, _plain(doc), str(path), ""), str(path))
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        rt.dump(doc, handle)


def flatten(mapping: dict, prefix: str = "") -> dict:
    """{'train': {'lr': 0.1}} → {'train.lr': 0.1}; the augment block is a mapping of its own keys."""
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _plain(node):
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node
