import re

import pytest
import yaml

from emotion.config import load_params, set_param
from emotion.errors import EmotionError

from conftest import REPO


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    return path


def edit(path, change):
    raw = yaml.safe_load(path.read_text())
    change(raw)
    path.write_text(yaml.safe_dump(raw))


def test_committed_params_load(params):
    assert params.train.model in ("cnn_small", "vgg", "resnet", "mobilenet")
    assert 0 < params.split.val_fraction < 1


def test_misspelled_key_names_key_and_suggests_fix(params_file):
    edit(params_file, lambda raw: raw["train"].update(lrr=raw["train"].pop("lr")))
    with pytest.raises(EmotionError, match=r"unknown key 'train.lrr'; did you mean 'train.lr'\?"):
        load_params(params_file)


def test_missing_key_is_named(params_file):
    edit(params_file, lambda raw: raw["split"].pop("seed"))
    with pytest.raises(EmotionError, match=r"missing key 'split.seed'"):
        load_params(params_file)


@pytest.mark.parametrize("key, value, message", [
    ("epochs", "ten", "'train.epochs' must be an integer"),
    ("epochs", True, "'train.epochs' must be an integer"),
    ("lr", "fast", "'train.lr' must be a number"),
    ("model", "resnet999", "'train.model' is 'resnet999'; choose one of"),
])
def test_wrong_type_or_choice_is_one_line(params_file, key, value, message):
    edit(params_file, lambda raw: raw["train"].update({key: value}))
    with pytest.raises(EmotionError, match=message) as err:
        load_params(params_file)
    assert "\n" not in str(err.value)


def test_nested_key_typo(params_file):
    edit(params_file, lambda raw: raw["train"]["augment"].update(fllip=True))
    with pytest.raises(EmotionError, match=r"unknown key 'train.augment.fllip'; did you mean 'train.augment.flip'"):
        load_params(params_file)


def test_exponent_written_by_dvc_set_is_a_float(params_file):
    # `dvc exp run -S train.lr=1e-4` writes 1e-4, which YAML 1.1 reads as a string
    params_file.write_text(re.sub(r"(?m)^  lr: .*$", "  lr: 1e-4", params_file.read_text()))
    assert load_params(params_file).train.lr == pytest.approx(1e-4)


def test_invalid_yaml_is_reported_with_line(params_file):
    params_file.write_text("train: [unclosed\n")
    with pytest.raises(EmotionError, match="params.yaml: line"):
        load_params(params_file)


def test_set_param_keeps_comments_and_validates(params_file):
    set_param(params_file, "train.epochs", "3")
    text = params_file.read_text()
    assert "# Single home of the pipeline's configuration" in text
    assert load_params(params_file).train.epochs == 3
    with pytest.raises(EmotionError, match="'train.epochs' must be an integer"):
        set_param(params_file, "train.epochs", "three")
    assert load_params(params_file).train.epochs == 3  # a rejected edit leaves the file untouched


@pytest.mark.parametrize("change, message", [
    (lambda t: t.update(weights="imagenet"), r"'train.weights' needs a keras.applications model .*set it to none"),
    (lambda t: t.update(model="vgg16", frozen_epochs=t["epochs"]), r"'train.frozen_epochs' \(\d+\) must be below"),
    (lambda t: t.update(sampling="balanced", class_weight="sqrt"), r"already evens out the classes"),
    (lambda t: t.update(resize=16), r"'train.resize' is 16; use 32 or more"),
    (lambda t: t.update(dense_units=0), r"'train.dense_units' is 0; use 1 or more"),
    (lambda t: t.update(patience=-1), r"'train.patience' is -1; use 0 \(no early stopping\) or 1 or more"),
    (lambda t: t["augment"].update(blur=1.5), r"'train.augment.blur' is 1.5; use a probability in \[0, 1\]"),
])
def test_contradictory_settings_are_one_line_errors(params_file, change, message):
    edit(params_file, lambda raw: change(raw["train"]))
    with pytest.raises(EmotionError, match=message):
        load_params(params_file)


def test_pretrained_backbone_settings_load(params_file):
    edit(params_file, lambda raw: raw["train"].update(model="efficientnetv2s", weights="imagenet", resize=96,
                                                       frozen_epochs=3, unfreeze_top=40))
    train = load_params(params_file).train
    assert (train.model, train.weights, train.resize, train.frozen_epochs) == ("efficientnetv2s", "imagenet", 96, 3)


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_committed_recipes_apply_to_params(params_file, config):
    from emotion.cli import main

    main(["params", "set", "--from", str(config), "--file", str(params_file)])
    overrides = yaml.safe_load(config.read_text())
    params = load_params(params_file)
    for key, value in overrides["train"].items():
        if key != "augment":
            assert getattr(params.train, key) == value, key
    if "evaluate" in overrides:
        assert params.evaluate.tta == overrides["evaluate"]["tta"]
    assert "# Single home" in params_file.read_text()  # comments survive


def test_recipe_with_a_typo_leaves_params_untouched(params_file, tmp_path):
    from emotion.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  modle: resnet\n")
    before = params_file.read_text()
    with pytest.raises(SystemExit):
        main(["params", "set", "--from", str(bad), "--file", str(params_file)])
    assert params_file.read_text() == before


def test_dvc_exp_run_set_param_changes_only_its_line(tmp_path):
    """`dvc exp run -S KEY=VALUE` rewrites params.yaml with DVC's own YAML dumper; the committed file is
    written the way that dumper writes (block lists, comments on the key's line), so an experiment's diff
    is its one param and nothing else. A [flow, list] used to come back as a block list."""
    from dvc.utils.hydra import apply_overrides

    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    apply_overrides(str(params), ["train.lr=0.001"])
    before = (REPO / "params.yaml").read_text().splitlines()
    after = params.read_text().splitlines()
    assert len(before) == len(after)
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(changed) == 1 and changed[0][0].startswith("  lr: ") and changed[0][1] == "  lr: 0.001"
