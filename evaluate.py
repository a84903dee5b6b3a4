"""Evaluate a trained network on the 10,000 MNIST test images: its accuracy and loss (the numbers of the run's last
`Test set:` line, to the last bit on the same machine and precision), the accuracy of each digit, the confusion
matrix, and two pictures beside the model: misclassified.png (every test digit it gets wrong, titled true ->
predicted and the probability it gave) and confusion.png.

    python evaluate.py out/model.pt                       # what python train.py left in ./out
    python evaluate.py out/checkpoint.pt                  # a finished run's checkpoint: the weights it tested
    python evaluate.py runs/ten/seed_3/model.pt --out-dir figures --data-dir PATH
    python evaluate.py out/model.pt --shifts              # also: averaged over the digit and its 4 one-pixel shifts

--shifts averages the network's probabilities over five copies of each image, the digit itself and the digit
moved one pixel left, right, up and down: on held-out images it added 0.015 % (+- 0.006) to the plain accuracy
(RESULTS.md, the shifted-predictions study), for five times the compute. The plain figure is printed beside it; the
per-digit figures, the confusion matrix and the pictures are then those of the averaged prediction.
"""
import sys
from pathlib import Path

import torch

from checkpoint import load_network
from device import DEVICES, PRECISIONS, autocast, pick_device, pick_precision
from errors import exit_status
from mnist import load_mnist, shifted
from plots import plot_confusion, plot_misclassified
from rundir import prepare_out_dir
from train import TEST_BATCH_SIZE, ArgumentParser, Recipe, evaluate


def main(argv=None):
    return exit_status(lambda: evaluate_model(parse_args(argv)), lambda e: None)


def evaluate_model(args):
    device = pick_device(args.device)
    precision, why = pick_precision(args.precision, device)
    print(f"precision: {precision} ({why})")
    net = load_network(args.model, device)
    out_dir = prepare_out_dir(args.out_dir or Path(args.model).parent)
    data = load_mnist(args.data_dir, device)
    x, y = data.test_x, data.test_y
    # train.py's own test, so the figures are the run's last Test set line
    (loss,), (correct,) = evaluate(net, x, y, Recipe(precision=precision), device)
    print(f"\nTest set: Average loss: {loss:.4f}, Accuracy: {correct}/{len(x)} ({100 * correct / len(x):.2f}%)\n")
    probs = probabilities(net, x, precision, shifts=args.shifts)
    predicted = probs.argmax(1)
    if args.shifts:
        right = int((predicted == y).sum())
        print(f"Averaged over the digit and its 4 one-pixel shifts: Accuracy: {right}/{len(x)} "
              f"({100 * right / len(x):.2f}%), plain {100 * correct / len(x):.2f}%\n")
    confusion = torch.bincount(10 * y + predicted, minlength=100).view(10, 10).cpu()  # [true, predicted]
    print(format_per_digit(confusion))
    print(format_confusion(confusion))
    wrong = (predicted != y).nonzero().flatten().cpu()
    examples = [(x[i, 0].cpu().numpy(), int(y[i]), int(predicted[i]), float(probs[i, predicted[i]])) for i in wrong]
    plot_misclassified(examples, out_dir / "misclassified.png")
    plot_confusion(confusion.numpy(), out_dir / "confusion.png")
    print(f"\n{len(wrong)} of {len(x)} test digits misclassified: {out_dir / 'misclassified.png'}, "
          f"{out_dir / 'confusion.png'}")


SHIFTS = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]  # (right, down): the digit, then its 4 one-pixel shifts


@torch.no_grad()
def probabilities(net, x, precision="fp32", shifts=False, batch_size=TEST_BATCH_SIZE):
    """The network's softmax probabilities (N, 10), in fp32, for images x (N, 1, 28, 28); with shifts, their mean
    over the digit and its 4 one-pixel shifts."""
    copies = SHIFTS if shifts else SHIFTS[:1]
    out = []
    for xb in x.split(batch_size):
        with autocast(x.device, precision):  # the network gives log-probabilities
            out.append(torch.stack([net(shifted(xb, right, down)).float().exp() for right, down in copies]).mean(0))
    return torch.cat(out)


def format_per_digit(confusion):
    per_digit = 100 * confusion.diag() / confusion.sum(1)
    return "accuracy per digit: " + "  ".join(f"{d}: {a:.2f} %" for d, a in enumerate(per_digit.tolist()))


def format_confusion(confusion):
    """The 10 x 10 table: a row per true digit, a column per predicted one."""
    lines = ["\nconfusion matrix (rows: the true digit, columns: the predicted one)",
             "true\\pred" + "".join(f"{d:>6}" for d in range(10))]
    lines += [f"{t:>9}" + "".join(f"{n:>6}" for n in row) for t, row in enumerate(confusion.tolist())]
    return "\n".join(lines)


def parse_args(argv=None):
    p = ArgumentParser(prog="python evaluate.py", description="Evaluate a trained network on the MNIST test set: "
                       "its accuracy, per digit, the confusion matrix, and pictures of its mistakes.")
    p.add_argument("model", help="a model.pt written by train.py, or a finished run's checkpoint.pt")
    p.add_argument("--data-dir", default="./data", help="folder holding MNIST/raw; downloaded there if missing "
                                                        "(default: %(default)s)")
    p.add_argument("--out-dir", default=None, help="where the two pictures go (default: the model's folder)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="device (default: %(default)s: cuda, else mps, else cpu)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="as train.py's: the run's precision gives the run's numbers (default: %(default)s)")
    p.add_argument("--shifts", action="store_true", help="also average the prediction over the digit and its 4 "
                                                         "one-pixel shifts (5x the compute; the plain figure beside)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
