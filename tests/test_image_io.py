import numpy as np
import pytest
from PIL import Image

from pipeline.errors import InputError
from pipeline.image_io import Photo, atomic_path, read_photo, write_photo


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((10, 20, 3), np.uint8)  # wide
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert read_photo(path).size == (10, 20)  # shown tall


def test_grayscale_alpha_and_16_bit_round_trip(tmp_path):
    gray16 = np.arange(12 * 8, dtype=np.uint16).reshape(12, 8) * 600
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    photo = read_photo(tmp_path / "g16.png")
    assert photo.grayscale and photo.bits == 16 and photo.alpha is None
    write_photo(photo, tmp_path / "g16_out.png")
    again = np.array(Image.open(tmp_path / "g16_out.png"))
    assert np.array_equal(again.astype(np.uint16), gray16)

    rgba = np.random.default_rng(0).integers(0, 256, (6, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    photo = read_photo(tmp_path / "a.png")
    assert photo.alpha is not None and not photo.grayscale
    write_photo(photo, tmp_path / "a_out.png")
    assert np.array_equal(np.array(Image.open(tmp_path / "a_out.png")), rgba)


def test_bad_files_raise_input_errors(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="empty.jpg: empty file"):
        read_photo(tmp_path / "empty.jpg")
    good = tmp_path / "good.jpg"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(good)
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError, match="cut.jpg: not a readable image"):
        read_photo(tmp_path / "cut.jpg")


def test_atomic_path_leaves_nothing_when_writing_fails(tmp_path):
    target = tmp_path / "out.jpg"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    write_photo(Photo(np.zeros((4, 4, 3), np.float32)), target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.jpg"]


def test_written_files_get_the_usual_mode(tmp_path):
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    target = tmp_path / "out.png"
    write_photo(Photo(np.zeros((4, 4, 3), np.float32)), target)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
