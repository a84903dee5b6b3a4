"""Evaluate a trained network on the 10,000 MNIST test images: its accuracy and loss (the numbers of the run's last
`Test set:` line, to the last bit on the same machine and precision), the accuracy of each digit, the confusion
matrix, and two pictures beside the model: misclassified.png (every test digit it gets wrong, titled true ->
predicted and the probability it gave) and confusion.png.

    python evaluate.py out/model.pt                       # what python train.py left in ./out
    python evaluate.py out/checkpoint.pt                  # a finished run's checkpoint: the weights it tested
    python evaluate.py runs/ten/seed_3/model.pt --out-dir figures --data-dir PATH
"""
import sys
from pathlib import Path

import torch

from checkpoint import load_network
from device import autocast, pick_device, pick_precision
from errors import exit_status
from mnist import load_mnist
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
    probs = probabilities(net, x, precision, device)
    predicted = probs.argmax(1)
    confusion = torch.zeros(10, 10, dtype=torch.long)
    confusion.index_put_((y.cpu(), predicted.cpu()), torch.ones(len(y), dtype=torch.long), accumulate=True)
    print(format_per_digit(confusion))
    print(format_confusion(confusion))
    wrong = (predicted != y).nonzero().flatten().cpu()
    examples = [(x[i, 0].cpu().numpy(), int(y[i]), int(predicted[i]), float(probs[i, predicted[i]])) for i in wrong]
    plot_misclassified(examples, out_dir / "misclassified.png")
    plot_confusion(confusion.numpy(), out_dir / "confusion.png")
    print(f"\n{len(wrong)} of {len(x)} test digits misclassified: {out_dir / 'misclassified.png'}, "
          f"{out_dir / 'confusion.png'}")


@torch.no_grad()
def probabilities(net, x, precision, device, batch_size=TEST_BATCH_SIZE):
    """The network's softmax probabilities (N, 10) for images x (N, 1, 28, 28), in fp32."""
    out = []
    for xb in x.split(batch_size):
        with autocast(device, precision):
            out.append(net(xb).float().exp())  # the network gives log-probabilities
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
    p = ArgumentParser(prog="python evaluate.py", description=__doc__.splitlines()[0])
    p.add_argument("model", help="a model.pt written by train.py, or a finished run's checkpoint.pt")
    p.add_argument("--data-dir", default="./data", help="folder holding MNIST/raw; downloaded there if missing "
                                                        "(default: %(default)s)")
    p.add_argument("--out-dir", default=None, help="where the two pictures go (default: the model's folder)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                   help="device (default: %(default)s: cuda, else mps, else cpu)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="as train.py's: the run's precision gives the run's numbers (default: %(default)s)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
