"""`stylize image`: bad input exits 2 with one clear line; a good run writes the image."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from pipeline.image_io import read_photo

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["image", *map(str, args)])


def one_line_error(result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], result.output
    assert "Traceback" not in result.output


def test_missing_content(tmp_path, starry_night):
    one_line_error(
        run(tmp_path / "absent.jpg", "-s", starry_night, "-o", tmp_path / "out.jpg"),
        "absent.jpg: file not found",
    )


def test_missing_style(tmp_path, tubingen):
    one_line_error(
        run(tubingen, "-s", tmp_path / "nostyle.jpg", "-o", tmp_path / "out.jpg"),
        "nostyle.jpg: file not found",
    )


def test_unreadable_image(tmp_path, starry_night):
    fake = tmp_path / "fake.jpg"
    fake.write_text("this is not a JPEG")
    one_line_error(
        run(fake, "-s", starry_night, "-o", tmp_path / "out.jpg"), "fake.jpg: not a readable image"
    )


def test_output_equal_to_input(tmp_path, starry_night):
    content = tmp_path / "photo.png"
    content.write_bytes(Path(starry_night).read_bytes())
    before = content.read_bytes()
    one_line_error(run(content, "-s", starry_night, "-o", content), "would overwrite an input")
    assert content.read_bytes() == before


def test_unwritable_folder(tmp_path, tubingen, starry_night):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    one_line_error(
        run(tubingen, "-s", starry_night, "-o", blocker / "out.jpg"),
        "cannot write into this folder",
    )


def test_existing_output_needs_overwrite(tmp_path, tubingen, starry_night):
    existing = tmp_path / "out.jpg"
    existing.write_bytes(b"old")
    one_line_error(
        run(tubingen, "-s", starry_night, "-o", existing), "exists already (use --overwrite)"
    )


def test_bad_weights_file(tmp_path, tubingen, starry_night):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"\x00" * 100)
    one_line_error(
        run(tubingen, "-s", starry_night, "-o", tmp_path / "o.jpg", "--weights", bad),
        "weights.pth: cannot read weights",
    )


def test_bad_blend(tmp_path, tubingen, starry_night):
    one_line_error(
        run(tubingen, "-s", starry_night, "-o", tmp_path / "o.jpg", "--style-blend", "0.7,0.3"),
        "2 weights for 1 style",
    )


def test_image_too_small_for_the_network(tmp_path, starry_night):
    import numpy as np

    from pipeline.image_io import Photo, write_photo

    strip = tmp_path / "strip.png"
    write_photo(Photo(np.full((20, 400, 3), 0.5, dtype=np.float32)), strip)
    result = run(
        strip, "-s", starry_night, "-o", tmp_path / "o.png", "--size", "200", "--iterations", "1"
    )
    one_line_error(result, "strip.png: 200x10 px is too small to stylize")
    assert not (tmp_path / "o.png").exists()


@pytest.mark.slow
def test_good_run_writes_the_image(tmp_path, tubingen, starry_night):
    output = tmp_path / "out.png"
    result = run(
        tubingen,
        "-s",
        starry_night,
        "-o",
        output,
        "--size",
        "64",
        "--iterations",
        "6",
        "--save-every",
        "2",
    )
    assert result.exit_code == 0, result.output
    photo = read_photo(output)
    assert photo.size == (64, 48)  # tubingen is 4:3
    assert (tmp_path / "out.s1.iter0002.png").is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_full_size_keeps_the_photos_size_and_its_metadata(tmp_path, starry_night):
    """--size full: the photo's own pixels, not a scaled-up small result; EXIF (date, camera) and
    the ICC profile come through, the orientation tag reset as the pixels are upright."""
    import numpy as np
    from PIL import Image, ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 72, 3), dtype=np.uint8))
    exif = photo.getexif()
    # make, date, rotated 90
    exif[0x010F], exif[0x0132], exif[0x0112] = ("TestCam", "2026:11:26 04:00:00", 6)
    content = tmp_path / "camera.jpg"
    photo.save(content, exif=exif, icc_profile=icc)
    output = tmp_path / "styled.jpg"
    result = run(content, "-s", starry_night, "-o", output, "--size", "full", "--iterations", "2")
    assert result.exit_code == 0, result.output
    with Image.open(output) as written:
        assert written.size == (40, 72)  # upright: the EXIF rotation applied once, not twice
        kept = written.getexif()
        assert (kept[0x010F], kept[0x0132], kept.get(0x0112, 1)) == (
            "TestCam",
            "2026:11:26 04:00:00",
            1,
        )
        assert written.info.get("icc_profile") == icc


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--size", "huge"], "--size"),
        (["--max-memory", "lots"], "--max-memory"),
        (["--max-memory", "10K"], "--max-memory"),
    ],
)
def test_size_and_memory_options_are_checked(tmp_path, tubingen, starry_night, args, expected):
    one_line_error(run(tubingen, "-s", starry_night, "-o", tmp_path / "out.jpg", *args), expected)
