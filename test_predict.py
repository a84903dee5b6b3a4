"""predict.py: images of MNIST's own digits at other sizes, polarities, colours and formats read as those digits; the
preprocessing's steps; one line and an exit status for every bad input."""
import re
import struct
import time
import zlib

import pytest
import torch
from PIL import Image, ImageFile, ImageOps

import predict
from checkpoint import save_model
from mnist import MNIST_MEAN, MNIST_STD, read_idx
from model import Net
from test_train import SHARED_DATA, CodeOnLoad, assert_one_line_error

LINE = re.compile(r"(.+): (\d) \(([\d.]+) %\), then (\d) \(([\d.]+) %\)")


def run_predict(capsys, *argv):
    code = predict.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def seven_segment_digits():
    """Ten digits in MNIST's form, light on black, each segment its own grey level (the brightest 1): drawn in a
    12 x 20 box (the longer side MNIST's 20), then centred by predict.centred, as predict.py centres any digit."""
    segments = {"a": (0, 3, 0, 12), "b": (0, 11, 9, 12), "c": (9, 20, 9, 12), "d": (17, 20, 0, 12),
                "e": (9, 20, 0, 3), "f": (0, 11, 0, 3), "g": (9, 12, 0, 12)}  # rows, columns
    levels = dict(zip("abcdefg", (255, 255, 200, 160, 120, 230, 180)))
    shapes = ("abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg")
    digits = []
    for shape in shapes:
        box = torch.zeros(20, 12)
        for s in shape:
            top, bottom, left, right = segments[s]
            box[top:bottom, left:right] = box[top:bottom, left:right].clamp(min=levels[s] / 255)
        digits.append(predict.centred(box))
    return torch.stack(digits)


def real_mnist_digits(n=20):
    raw = SHARED_DATA / "MNIST" / "raw"
    if not raw.is_dir():
        pytest.skip(f"real MNIST not found at {SHARED_DATA} (the self-made digits are tested without it)")
    return read_idx(raw / "t10k-images-idx3-ubyte", 3)[:n].float() / 255


@pytest.fixture(scope="module")
def net():
    """An untrained Net as a fixed function whose answers differ from digit to digit: its BatchNorm statistics those
    of the self-made digits (no gradient step), its head scaled up (else it answers ~10 % for every digit)."""
    torch.manual_seed(0)
    net = Net()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # a plain average over the one batch
    with torch.no_grad():
        net(normalised(seven_segment_digits()))
        net.features[-1].weight.mul_(30)
    return net.eval()


@pytest.fixture
def model(net, tmp_path):
    save_model(tmp_path / "model.pt", net)
    return tmp_path / "model.pt"


def normalised(digits):
    return digits.sub(MNIST_MEAN).div(MNIST_STD).unsqueeze(1)


def grey_image(digit, scale=1):
    """A digit (H, W) in [0, 1] as an 8-bit grey image, each pixel a scale x scale block."""
    h, w = digit.shape
    image = Image.frombytes("L", (w, h), (digit * 255).round().byte().numpy().tobytes())
    return image.resize((w * scale, h * scale), Image.Resampling.NEAREST)


def variants(digit):
    """(name, image, lossless) for one digit (28, 28): other sizes, placings, polarities, colours, bit depths, alpha,
    formats, and a photo's EXIF orientation."""
    big = grey_image(digit, 2)
    off_centre = Image.new("L", (100, 70))
    off_centre.paste(big, (40, 8))  # a 40-pixel margin on the left, 4 on the right
    black = Image.new("L", big.size)
    white = Image.new("L", big.size, 255)
    on_paper = Image.composite(Image.new("RGB", (84, 84), (30, 60, 200)), Image.new("RGB", (84, 84), (250, 240, 220)),
                               grey_image(digit, 3))  # blue ink on cream paper
    on_its_side = grey_image(digit).transpose(Image.Transpose.ROTATE_90)
    on_its_side.getexif()[0x0112] = 6  # EXIF's Orientation: "rotate 90 degrees clockwise to view", as phones save
    return [("28x28.png", grey_image(digit), True),
            ("56x56-dark-on-light.png", ImageOps.invert(big), True),
            ("100x70-off-centre.png", off_centre, True),
            ("16-bit.png", Image.fromarray((digit.numpy() * 65535).round().astype("uint16")), True),
            ("black-ink-on-transparent.png", Image.merge("RGBA", (black, black, black, big)), True),
            ("white-ink-on-transparent.png", Image.merge("RGBA", (white, white, white, big)), True),
            ("exif-rotated.png", on_its_side, True),
            ("blue-on-cream.png", on_paper, False),
            ("dark-on-light-112x112.jpg", ImageOps.invert(grey_image(digit, 4)), False)]


@pytest.mark.parametrize("source", ["self-made", "real MNIST"])
def test_images_of_mnist_digits_in_other_forms_read_as_the_digits_themselves(source, net, model, tmp_path, capsys):
    """Each digit, written in each form of variants(), is preprocessed back into itself, and predict.py's line for it
    is the network's answer for the original 28x28 tensor. Lossless forms of the self-made digits come back exactly;
    MNIST's own digits lose the faint edge pixels (fainter than predict.FAINT) that lie outside the box of their ink,
    and JPEG and colour lose a little: their probabilities are compared within a tolerance (3 or 10 points: 3 or 2
    times the largest difference seen), their digit unless the original's top two are within twice that."""
    digits = seven_segment_digits() if source == "self-made" else real_mnist_digits()
    lossless_tolerance, tolerance = (1e-5, 0.03) if source == "self-made" else (predict.FAINT, 0.1)
    expected = predict.probabilities(net, normalised(digits))
    files = []
    for i, digit in enumerate(digits):
        for name, image, lossless in variants(digit):
            path = tmp_path / f"{i}-{name}"
            image.save(path, quality=95, exif=image.getexif())
            read = predict.preprocess(path)[0] * MNIST_STD + MNIST_MEAN
            error = (read - digit).abs()
            assert error.max() <= lossless_tolerance if lossless else error.mean() < 0.02, (path.name, error.max())
            files.append((path, i, lossless))
    code, out, err = run_predict(capsys, "--model", model, *[path for path, _, _ in files])
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == len(files)
    for line, (path, i, lossless) in zip(lines, files):
        if lossless and source == "self-made":  # the same tensor: the same numbers, to the last printed digit
            assert line == predict.answer(path, expected[i])
            continue
        name, digit, p, _, _ = LINE.fullmatch(line).groups()
        top2 = expected[i].topk(2).values
        assert name == str(path) and abs(float(p) / 100 - top2[0]) < tolerance, (line, expected[i])
        if top2[0] - top2[1] > 2 * tolerance:  # not a near-tie: no difference within the tolerance changes the digit
            assert int(digit) == expected[i].argmax(), (line, expected[i])


# ---------------------------------------------------------------------------------------------
# the preprocessing's steps

def ink_box(x):
    """(height, width, top, left) of the ink in a preprocessed image (1, 28, 28)."""
    ink = x[0] > -MNIST_MEAN / MNIST_STD + 1e-3
    rows, cols = ink.any(1).nonzero()[:, 0], ink.any(0).nonzero()[:, 0]
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1, rows[0], cols[0]


def centre_of_mass(x):
    mass = x[0] * MNIST_STD + MNIST_MEAN
    rows, cols = torch.arange(28.0), torch.arange(28.0)
    return (mass.sum(1) * rows).sum() / mass.sum(), (mass.sum(0) * cols).sum() / mass.sum()


def test_a_light_background_is_inverted_and_the_levels_stretched_to_0_and_1():
    paper = torch.full((40, 30), 0.8)
    paper[10:30, 12:18] = 0.1  # dark ink
    ink = predict.light_on_dark(paper, "x.png")
    assert ink[0, 0] == 0 and torch.allclose(ink[10:30, 12:18], torch.ones(20, 6))
    assert torch.allclose(predict.light_on_dark(1 - paper, "x.png"), ink)  # light on dark: not inverted


@pytest.mark.parametrize("height, width, expected", [(200, 50, (20, 5)), (50, 200, (5, 20)), (6, 3, (20, 10)),
                                                     (300, 300, (20, 20))])
def test_the_longer_side_becomes_20_pixels_keeping_the_aspect_ratio(tmp_path, height, width, expected):
    image = Image.new("L", (width + 90, height + 40), 255)
    image.paste(0, (70, 10, 70 + width, 10 + height))  # a dark bar, off centre, on white
    image.save(tmp_path / "bar.png")
    assert tuple(ink_box(predict.preprocess(tmp_path / "bar.png"))[:2]) == expected


def test_the_digit_is_centred_by_its_centre_of_mass_not_by_its_box(tmp_path):
    image = Image.new("L", (90, 60))
    image.paste(255, (5, 5, 9, 45))  # a thin upright bar near the top-left corner...
    image.paste(255, (9, 21, 45, 29))  # ...and a thick arm to its right: the mass sits right of the box's middle
    image.save(tmp_path / "l.png")
    x = predict.preprocess(tmp_path / "l.png")
    cy, cx = centre_of_mass(x)
    assert 13.5 <= cy < 14.5 and 13.5 <= cx < 14.5
    height, width, top, left = ink_box(x)
    assert abs(left + width / 2 - 14) >= 2  # the box itself is off centre


def test_mnists_own_digits_are_left_as_they_are_but_for_faint_pixels_outside_their_ink():
    digits = real_mnist_digits(200)
    back = torch.stack([predict.as_mnist(digit, "mnist") for digit in digits]) * MNIST_STD + MNIST_MEAN
    assert ((back[:, 0] - digits).abs().flatten(1).max(1).values <= predict.FAINT).float().mean() > 0.98


# ---------------------------------------------------------------------------------------------
# bad input: one line and an exit status, never a traceback

def png_header_claiming(width, height):
    """A 57-byte PNG whose header claims width x height grey pixels and holds none: a decompression bomb's header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", b"") + chunk(b"IEND", b""))


@pytest.fixture
def good_png(tmp_path):
    grey_image(seven_segment_digits()[3]).save(tmp_path / "three.png")
    return tmp_path / "three.png"


def bad_image(tmp_path, good_png, kind):
    """A bad image file of the given kind, and the words its error line must have."""
    path = tmp_path / f"{kind}.png"
    if kind == "missing":
        return path, ["no such file"]
    if kind == "folder":
        path.mkdir()
        return path, ["is a folder"]
    if kind == "text":
        path.write_text("not an image\n")
        return path, ["is not an image predict.py reads", "PNG"]
    if kind == "truncated":
        data = good_png.read_bytes()
        path.write_bytes(data[:len(data) // 2])
        return path, ["damaged or truncated", "save it again"]
    if kind == "blank":
        Image.new("RGB", (50, 50), (240, 240, 240)).save(path)
        return path, ["no digit found", "more contrast"]
    if kind == "faint 16-bit":  # 300 levels of 65,535 are nothing; the same number of 8-bit levels would be
        grey = torch.full((50, 50), 30000)
        grey[10:40, 20:25] = 30300
        Image.fromarray(grey.numpy().astype("uint16")).save(path)
        return path, ["no digit found"]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["missing", "folder", "text", "truncated", "blank", "faint 16-bit"])
def test_a_bad_image_is_one_line_naming_it_and_exit_2(model, good_png, tmp_path, capsys, kind):
    path, words = bad_image(tmp_path, good_png, kind)
    code, out, err = run_predict(capsys, "--model", model, path)
    assert_one_line_error(code, err, str(path), *words)
    assert out == ""


# 9,000^2: over predict.py's 50 megapixels, under Pillow's warning; 12,000^2: Pillow only warns; 100,000^2: Pillow
# refuses it
@pytest.mark.parametrize("side", [9_000, 12_000, 100_000])
def test_a_decompression_bomb_is_refused_from_its_header_before_any_pixel_is_decoded(
        model, tmp_path, capsys, monkeypatch, recwarn, side):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_claiming(side, side))
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image))  # where pixels would be
    start = time.perf_counter()
    code, out, err = run_predict(capsys, "--model", model, bomb)
    assert time.perf_counter() - start < 2
    assert_one_line_error(code, err, str(bomb), "more than the 50 megapixels", "decompression bomb", "shrink it")
    assert decoded == [] and out == ""
    assert not recwarn.list  # Pillow's warning would be a second line on stderr


def test_several_images_and_one_bad_answer_the_good_ones_and_exit_1(model, good_png, tmp_path, capsys):
    code, out, err = run_predict(capsys, "--model", model, good_png, tmp_path / "missing.png", good_png)
    assert_one_line_error(code, err, "missing.png", "no such file", expected_code=1)
    assert [LINE.fullmatch(line)[1] for line in out.splitlines()] == [str(good_png)] * 2
    code, out, err = run_predict(capsys, "--model", model, tmp_path / "a.png", tmp_path / "b.png")
    assert code == 2 and out == "" and len(err.splitlines()) == 2  # none answered: 2, one line each


def bad_model(tmp_path, net, kind):
    path = tmp_path / f"{kind}.pt"
    if kind == "another network":
        torch.save(torch.nn.Linear(3, 3).state_dict(), path)
        return path, ["weights of another network"]
    if kind == "truncated":
        save_model(path, net)
        path.write_bytes(path.read_bytes()[:1000])
        return path, ["damaged or truncated"]
    if kind == "unfinished run":  # a checkpoint.pt's layout, 3 of 15 epochs done
        torch.save({"model": net.state_dict(), "recipe": {"epochs": 15}, "epoch": 2, "averaged": None}, path)
        return path, ["unfinished run (3 of 15 epochs)", "--resume"]
    if kind == "unsafe pickle":
        torch.save({"weights": CodeOnLoad(print, "ran")}, path)
        return path, ["refused, nothing in it was run"]
    return path, ["no such file"]  # missing


@pytest.mark.parametrize("kind", ["missing", "another network", "truncated", "unfinished run", "unsafe pickle"])
def test_a_bad_model_is_one_line_and_exit_2_before_any_image(net, good_png, tmp_path, capsys, kind):
    path, words = bad_model(tmp_path, net, kind)
    code, out, err = run_predict(capsys, "--model", path, good_png, tmp_path / "missing.png")
    assert_one_line_error(code, err, f"--model {path}", *words)
    assert out == ""


def test_a_finished_runs_checkpoint_answers_as_its_model_pt(net, model, good_png, tmp_path, capsys):
    torch.save({"model": net.state_dict(), "recipe": {"epochs": 1, "average_epochs": 0}, "epoch": 0, "averaged": None},
               tmp_path / "checkpoint.pt")
    answers = [run_predict(capsys, "--model", path, good_png) for path in (model, tmp_path / "checkpoint.pt")]
    assert answers[0] == answers[1] and answers[0][0] == 0


def test_no_image_on_the_command_line_is_one_line(capsys):
    code, _, err = run_predict(capsys)
    assert_one_line_error(code, err, "IMAGE", "python predict.py --help")


def test_shifts_add_the_prediction_averaged_over_the_digits_one_pixel_shifts(net, model, good_png, capsys):
    code, out, _ = run_predict(capsys, "--model", model, "--shifts", good_png)
    plain, averaged = out.strip().split("; averaged over 4 one-pixel shifts too: ")
    assert code == 0 and LINE.fullmatch(plain) and LINE.fullmatch(averaged)
    assert plain == run_predict(capsys, "--model", model, good_png)[1].strip()  # the plain answer unchanged
    x = predict.preprocess(good_png).unsqueeze(0)
    assert averaged == predict.answer(good_png, predict.probabilities(net, x, shifts=True)[0])
