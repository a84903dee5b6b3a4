"""MNIST for train.py: the four files parsed once into normalised tensors on the training device, a fixed
held-out split for recipe searches, the batched augmentation (rotation, shift, scale: one affine warp), and the
whole-pixel shifts that evaluate.py and predict.py average their predictions over (--shifts).
"""
import errno
import math
import os
import struct
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from errors import PERMISSION_ERRORS, Fail, write_permission_fix

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class Data(NamedTuple):
    train_x: torch.Tensor  # (N, 1, 28, 28) float, normalised
    train_y: torch.Tensor  # (N,) long
    test_x: torch.Tensor
    test_y: torch.Tensor


FILES = {"training": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def load_mnist(data_dir, device):
    """MNIST as normalised float tensors on `device`: (train_x, train_y, test_x, test_y). Read straight from the
    four files in torchvision's layout; torchvision (about 3 s to import) only downloads them when they are missing."""
    root = Path(data_dir)
    if root.exists() and not root.is_dir():
        raise Fail(f"--data-dir {root} is a file: point it at the folder that holds MNIST/raw/")
    raw = root / "MNIST" / "raw"
    if not all((raw / name).is_file() for pair in FILES.values() for name in pair):
        download(root)
    splits = [check_split(read_idx(raw / images, 3), read_idx(raw / labels, 1), split, raw)
              for split, (images, labels) in FILES.items()]
    (train_x, train_y), (test_x, test_y) = splits
    # uint8 to the device first, then normalise in place: one float copy, no temporaries
    normalised = lambda x: x.to(device).float().div_(255).sub_(MNIST_MEAN).div_(MNIST_STD).unsqueeze(1)
    return Data(normalised(train_x), train_y.long().to(device), normalised(test_x), test_y.long().to(device))


def download(root):
    """Download MNIST into root/MNIST/raw with torchvision. A folder that cannot be written is named as the cause
    (checked before any network access), and the network is blamed only when the download itself failed."""
    raw = root / "MNIST" / "raw"
    try:
        raw.mkdir(parents=True, exist_ok=True)  # torchvision's first step too
        if not os.access(raw, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(raw))
        from torchvision.datasets import MNIST

        for train in (True, False):
            MNIST(root, train=train, download=True)
    except OSError as e:
        if e.filename is None or e.errno is None:  # a socket's or URL's error (refused, timed out): the network's
            raise Fail(no_download_message(raw)) from None
        if e.errno in PERMISSION_ERRORS:
            raise Fail(f"MNIST not found in {raw}, and it cannot be downloaded there: {e.filename} is not writable "
                       f"({e.strerror}): {write_permission_fix(e.filename)}; or pass --data-dir DIR where "
                       "DIR/MNIST/raw/ holds the four files") from None
        raise Fail(f"MNIST not found in {raw}, and writing the download failed: {e.filename} ({e.strerror}): "
                   "free some space or fix the folder, or pass --data-dir DIR where DIR/MNIST/raw/ holds the "
                   "four files") from None
    except Exception:
        raise Fail(no_download_message(raw)) from None


def no_download_message(raw):
    return (f"MNIST not found in {raw} and the download failed (no network?): "
            "pass --data-dir DIR where DIR/MNIST/raw/ holds train-images-idx3-ubyte, "
            "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte")


def read_idx(path, ndim):
    """An IDX file (a big-endian magic number 0x800 + ndim and ndim sizes, then the uint8 values) as a tensor;
    a file that is not one, or whose size disagrees with its header, is a Fail naming it."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise Fail(f"cannot read {path} ({e.strerror}): fix its permissions or point --data-dir at another copy")
    header = 4 * (1 + ndim)
    magic, *shape = struct.unpack(f">{1 + ndim}i", data[:header]) if len(data) >= header else (None,)
    if magic != 0x800 + ndim or len(data) != header + math.prod(shape):
        raise Fail(f"MNIST file {path} is damaged (bad header or size): delete it and download again, "
                   "or point --data-dir at a good copy")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header).view(shape)


def hold_out(data, n):
    """Replace the test set by n training images, drawn once with a fixed generator (the same for every seed
    and recipe), and train on the rest: a recipe search that never looks at the test set."""
    train_x, train_y, _, _ = data
    if not 0 < n < len(train_x):
        raise Fail(f"--validation {n} must leave training images: pass 1 to {len(train_x) - 1}, e.g. 10000")
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0)).to(train_x.device)
    keep, held = order[:-n], order[-n:]
    return Data(train_x[keep], train_y[keep], train_x[held], train_y[held])


def check_split(images, labels, name, raw):
    if images.ndim != 3 or tuple(images.shape[1:]) != (28, 28) or len(images) == 0:
        raise Fail(f"MNIST {name} images in {raw} are not N x 28 x 28 (got {tuple(images.shape)}): "
                   "replace the files with the original ones")
    if len(images) != len(labels):
        raise Fail(f"MNIST {name} files in {raw} disagree: {len(images)} images but {len(labels)} labels: "
                   "replace them with the original files")
    if labels.max() > 9:
        raise Fail(f"MNIST {name} labels in {raw} are outside 0-9: replace the file")
    return images, labels


def augment(x, rotation, shift, scale=0.0):
    """Rotate each image by its own random angle in [-rotation, rotation] degrees, shift it by its own
    random offset of up to `shift` pixels per axis and (if scale > 0) resize it by its own factor in
    [1 - scale, 1 + scale]: one batched affine warp, no per-image Python."""
    if rotation == 0 and shift == 0 and scale == 0:
        return x
    n = x.shape[0]
    angle = (torch.rand(n, device=x.device) * 2 - 1) * math.radians(rotation)
    offset = (torch.rand(n, 2, device=x.device) * 2 - 1) * shift
    # drawn only when used, so that runs without scaling keep their random stream (and their numbers)
    zoom = 1 + (torch.rand(n, device=x.device) * 2 - 1) * scale if scale else None
    return warp(x, angle, offset, zoom)


def warp(x, angle, offset, zoom=None):
    """Rotate images (N, 1, H, W) by `angle` radians (N,) about their centres, shift them by `offset`
    pixels (N, 2: x, y) and scale them by `zoom` (N,). Uncovered corners get the background (black) value."""
    size = x.shape[-1]
    cos, sin, shift = angle.cos(), angle.sin(), -offset * 2 / size  # pixels -> grid's [-1, 1] coordinates
    if zoom is not None:  # the grid maps output to input pixels: a larger digit samples a smaller area
        cos, sin = cos / zoom, sin / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    background = -MNIST_MEAN / MNIST_STD  # a black pixel after normalisation
    return F.grid_sample(x - background, grid, align_corners=False) + background


def shifted(x, right, down):
    """Images (N, 1, H, W) moved by whole pixels, `right` and `down` (negative: left, up); the uncovered edge is
    background (black after normalisation), nothing wraps around. shifted(x, 0, 0) is x itself."""
    h, w = x.shape[-2:]
    p = max(abs(right), abs(down))
    padded = F.pad(x, (p, p, p, p), value=-MNIST_MEAN / MNIST_STD)
    return padded[..., p - down:p - down + h, p - right:p - right + w]
