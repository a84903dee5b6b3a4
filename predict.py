"""Read the digit in each of your own images with the trained network.

    python predict.py seven.png photo.jpg                  # out/model.pt (what python train.py leaves), on the CPU
    python predict.py --model out/checkpoint.pt --device auto scans/*.png
    python predict.py --shifts seven.png                   # also averaged over the digit's 4 one-pixel shifts

One line per image on stdout: `seven.png: 7 (99.2 %), then 1 (0.5 %)`, the digit, its probability, the runner-up.
Each image becomes a digit as MNIST's own were (preprocess):
  1. read with Pillow (PNG, JPEG, BMP, GIF, TIFF, WebP, up to 50 megapixels), turned upright as its EXIF says, made
     grey; transparent pixels become paper: white under dark ink, black under light ink;
  2. inverted if its background is light (the border's median nearer the brightest pixel than the darkest): MNIST's
     digits are light on black; then stretched so that the background is 0 and the brightest ink 1;
  3. cropped to the ink's bounding box (ink fainter than 0.2, noise or paper texture, does not widen it), its longer
     side scaled to 20 pixels keeping the aspect ratio (shrinking averages each new pixel's area: anti-aliasing);
  4. pasted into a black 28x28 field, moved by whole pixels so that its centre of mass lies within half a pixel of
     pixel (14, 14), as in every MNIST image; normalised with MNIST's mean and std, as train.py's data.

Exit status: 0 every image answered; 1 some answered, some not; 2 none answered, or a bad --model, --device or
command line (then nothing is read); 130 Ctrl-C. An image that cannot be answered (missing, not an image, damaged,
over 50 megapixels, blank) gets one line on stderr naming it, the cause and the fix; the others are still answered.
"""
import math
import sys
import warnings

import torch
from PIL import Image, ImageOps

from checkpoint import load_network
from device import DEVICES, pick_device
from errors import OPEN_ERRORS, Fail, cannot_open, exit_status
from evaluate import probabilities
from mnist import MNIST_MEAN, MNIST_STD
from train import ArgumentParser

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")  # raster formats only (Pillow's EPS reader runs Ghostscript)
MAX_PIXELS = 50_000_000  # a digit needs far fewer; Pillow's decompression-bomb guard warns from 89, refuses from 179
MIN_CONTRAST = 0.2  # of the grey range: the brightest ink against the background; less is a blank image
FAINT = 0.2  # ink fainter than this (background 0, the brightest ink 1) does not widen the digit's bounding box
BOX, FIELD = 20, 28  # MNIST: the digit's longer side, and the field it is centred in


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    return exit_status(lambda: predict(argv), lambda e: None)


def predict(argv):
    opts = parse_args(argv)
    device = pick_device(opts.device)
    try:
        net = load_network(opts.model, device)
    except Fail as e:
        raise Fail(f"--model {e}") from None
    failed = 0
    for path in opts.images:
        try:
            x = preprocess(path)
        except Fail as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        x = x.unsqueeze(0).to(device)
        line = answer(path, probabilities(net, x)[0])
        if opts.shifts:
            line += f"; averaged over 4 one-pixel shifts too: {answer(path, probabilities(net, x, shifts=True)[0])}"
        print(line, flush=True)
    return 0 if not failed else 1 if failed < len(opts.images) else 2


def answer(path, probs):
    (p, runner_up_p), (digit, runner_up) = (t.tolist() for t in probs.topk(2))
    return f"{path}: {digit} ({100 * p:.1f} %), then {runner_up} ({100 * runner_up_p:.1f} %)"


def preprocess(path):
    """The digit in the image file at `path` as the network's input, (1, 28, 28) normalised; a Fail if none."""
    return as_mnist(read_grey(path), path)


def as_mnist(grey, path):
    """Grey levels (H, W) in [0, 1] made into MNIST's form, normalised (1, 28, 28): steps 2 to 4 above."""
    digit = scale_longer_side(crop_to_ink(light_on_dark(grey, path)))
    return centred(digit).sub(MNIST_MEAN).div(MNIST_STD).unsqueeze(0)


def read_grey(path):
    """The image's grey levels (H, W) in [0, 1], transparent pixels flattened onto paper."""
    grey, alpha = decode(path)
    levels = pixels(grey) / (65535 if grey.mode == "F" else 255)
    return levels if alpha is None else flatten_alpha(levels, pixels(alpha) / 255)


def decode(path):
    """The image file as Pillow images: its grey levels (mode L, or F for 16-bit grey) and its opacity (L, or None)."""
    try:
        with warnings.catch_warnings():  # Pillow's warnings (odd EXIF, palette, size) would be stray stderr lines
            warnings.simplefilter("ignore")
            with Image.open(path, formats=FORMATS) as img:  # reads the header only
                if img.width * img.height > MAX_PIXELS:
                    raise Fail(too_big(path, f"{img.width} x {img.height} pixels"))
                img = ImageOps.exif_transpose(img)  # a phone photo upright, as its viewer shows it
                if img.mode.startswith("I;16"):  # Pillow's convert("L") would clip 16-bit grey, not scale it
                    return img.convert("F"), None
                if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                    img = img.convert("RGBA")
                    return img.convert("L"), img.getchannel("A")
                return img.convert("L"), None
    except Fail:
        raise
    except OPEN_ERRORS as e:
        raise cannot_open(path, e, "pass the path of an image of a digit",
                          f"pass the image files in it (e.g. {path}/*.png)") from None
    except Image.DecompressionBombError:  # over twice Pillow's limit: Pillow refuses it before we see its size
        raise Fail(too_big(path, f"over {2 * Image.MAX_IMAGE_PIXELS:,} pixels")) from None
    except Image.UnidentifiedImageError:
        raise Fail(f"{path} is not an image predict.py reads ({', '.join(FORMATS)}): "
                   "pass a photo or scan of a digit in one of these formats") from None
    except Exception as e:  # Pillow's decoders fail in many ways (OSError, SyntaxError, ValueError, EOFError)
        raise Fail(f"{path} is a damaged or truncated image ({type(e).__name__}: {e}): save it again") from None


def too_big(path, size):
    return (f"{path} claims {size}: more than the {MAX_PIXELS // 10**6} megapixels predict.py reads (a decompression "
            "bomb?), refused before decoding: shrink it, a digit needs no more than a few hundred pixels a side")


def pixels(img):
    """A Pillow image of mode L or F as a float tensor (H, W) of its values."""
    dtype = {"L": torch.uint8, "F": torch.float32}[img.mode]
    return torch.frombuffer(bytearray(img.tobytes()), dtype=dtype).view(img.height, img.width).float()


def flatten_alpha(grey, alpha):
    """Transparent pixels become paper that contrasts with the visible ones, so that a digit drawn on a transparent
    canvas keeps its strokes whatever colour its hidden pixels have: white paper under dark ink, else black."""
    ink_is_dark = (grey * alpha).sum() < 0.5 * alpha.sum()
    return grey * alpha + (1.0 if ink_is_dark else 0.0) * (1 - alpha)


def light_on_dark(grey, path):
    """MNIST's polarity and levels: background (the border's median) 0, the brightest ink 1."""
    if border(grey).median() > (grey.min() + grey.max()) / 2:  # dark on light
        grey = 1 - grey
    background, brightest = border(grey).median(), grey.max()
    if brightest - background < MIN_CONTRAST:
        raise Fail(f"{path}: no digit found (nothing differs from the background by {MIN_CONTRAST:.0%} of the grey "
                   "range): pass an image of one digit, dark on light or light on dark, with more contrast")
    return ((grey - background) / (brightest - background)).clamp(0, 1)


def border(image):
    return torch.cat([image[0], image[-1], image[:, 0], image[:, -1]])


def crop_to_ink(ink):
    rows, cols = (ink >= FAINT).any(1).nonzero()[:, 0], (ink >= FAINT).any(0).nonzero()[:, 0]
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def scale_longer_side(digit, size=BOX):
    """The digit with its longer side `size` pixels, the same aspect ratio: shrunk by averaging the area each new
    pixel covers (a stroke's edge turns grey, MNIST's anti-aliasing), enlarged by interpolation."""
    h, w = digit.shape
    factor = size / max(h, w)
    resample = Image.Resampling.BOX if factor < 1 else Image.Resampling.BILINEAR
    image = Image.frombytes("F", (w, h), digit.contiguous().numpy().tobytes())
    return pixels(image.resize((max(1, round(w * factor)), max(1, round(h * factor))), resample))


def centred(digit, size=FIELD):
    """The digit in a black size x size field, moved by whole pixels (no resampling) so that its centre of mass lies
    in [13.5, 14.5) on both axes, as in every MNIST image; less where the digit would leave the field."""
    h, w = digit.shape
    mass = digit.double() / digit.double().sum()
    cy, cx = (mass.sum(1) * torch.arange(h)).sum().item(), (mass.sum(0) * torch.arange(w)).sum().item()
    top = min(max(math.ceil(size / 2 - 0.5 - cy), 0), size - h)
    left = min(max(math.ceil(size / 2 - 0.5 - cx), 0), size - w)
    field = torch.zeros(size, size)
    field[top:top + h, left:left + w] = digit
    return field


def parse_args(argv):
    p = ArgumentParser(prog="python predict.py", description="Read the digit in each image with the trained network.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...), one digit each")
    p.add_argument("--model", default="out/model.pt", metavar="PATH",
                   help="the trained network: a model.pt, or a finished run's checkpoint.pt (default: %(default)s)")
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help="where the network runs (default: %(default)s; auto: cuda, else mps, else cpu)")
    p.add_argument("--shifts", action="store_true", help="also the prediction averaged over the digit and its 4 "
                                                         "one-pixel shifts (evaluate.py --shifts)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
