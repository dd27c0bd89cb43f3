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
    assert params.train.model in ("cnn_small", "vgg")
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
    params_file.write_text(params_file.read_text().replace("lr: 0.002", "lr: 1e-4"))
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
