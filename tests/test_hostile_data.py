"""Damaged files bnnx reads: a corrupt cached teacher is deleted, retrained and reported instead of
breaking every later run; an image folder holding a decompression bomb or an image Pillow cannot
decode is one ValueError naming the file, with nothing on disk changed."""

import pytest
from PIL import Image

from search.datasets import Dataset, get_dataset
from search.teacher import TEACHER_DIR, fp_twin, load_weights, teacher
from spaces import Config


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    """300 digits: a one-epoch teacher trains in about a second."""
    d = get_dataset("digits")
    return Dataset("digits", d.x_train[:300], d.y_train[:300], d.x_val[:100], d.y_val[:100],
                   d.x_test, d.y_test, 10)


def test_a_damaged_cached_teacher_is_deleted_retrained_and_reported(tiny, tmp_path, capsys):
    student = Config.from_dict({"arch": {"width": 8, "depth": 1},
                                "train": {"epochs": 1, "batch_size": 100, "distill_weight": 0.5}})
    teacher(student, tiny, tmp_path)
    [cached] = (tmp_path / TEACHER_DIR).iterdir()
    good = cached.read_bytes()
    for damage in (b"garbage, not safetensors" * 4, good[: len(good) // 2]):
        cached.write_bytes(damage)
        capsys.readouterr()
        model = teacher(student, tiny, tmp_path)
        err = capsys.readouterr().err
        assert f"cached teacher {cached} does not load (" in err
        assert "deleted it, retraining" in err
        assert list((tmp_path / TEACHER_DIR).iterdir()) == [cached]  # only that file, replaced
        assert model.state_dict().keys() == load_weights(fp_twin(student), tiny,
                                                         cached).state_dict().keys()


def write_classes(root, size=(8, 8)) -> None:
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("L", size, color=40 * i).save(root / cls / f"{i}.png")


def test_a_decompression_bomb_is_one_error_naming_the_file(tmp_path, monkeypatch):
    write_classes(tmp_path)
    Image.new("L", (64, 64)).save(tmp_path / "dog" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 > 2 x 1000: Pillow refuses
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=r"dog/bomb.png: too many pixels to decode safely \("):
        get_dataset(f"folder:{tmp_path}")
    assert sorted(tmp_path.rglob("*")) == before


def test_an_image_whose_decoder_raises_value_error_is_one_error_naming_the_file(tmp_path):
    write_classes(tmp_path)
    (tmp_path / "cat" / "header.pgm").write_bytes(b"P5\n4 4\n25x\n" + bytes(16))  # bad maxval
    with pytest.raises(ValueError, match=r"cat/header.pgm: not an image Pillow can read \("):
        get_dataset(f"folder:{tmp_path}")
