"""Shifted copies at prediction time: does averaging the network's probabilities over the digit and copies of it
moved by one pixel (or turned a little) predict better than the digit alone? Each seed's network is trained once by
`python train.py --validation 10000 --seeds ...` (its seed_N/model.pt), then scored on the 10,000 held-out training
images plainly and with each variant below: the differences are paired (one trained network per seed, no seed noise).
Never on the test set.

The plan, written on 2026-12-06 before any of the study's runs:
- Variants (each averages the softmax probabilities of its copies; a shift moves the digit by exactly one pixel and
  fills the uncovered edge with the background, a turn is train.py's affine warp):
  shift4: the digit and its 4 one-pixel shifts (left, right, up, down), 5 copies;
  shift8: the digit and its 8 one-pixel neighbours (diagonals too), 9 copies;
  turn5: the digit and the digit turned by -5 and +5 degrees, 3 copies;
  shift4_turn5: shift4's 5 copies and turn5's two turned ones, 7 copies.
- Primary: shift4 against the plain prediction, final held-out accuracy, paired over at least 30 random seeds of the
  default recipe (precision auto). It helps if the mean difference exceeds twice its standard error.
- Another variant replaces shift4 only if it beats shift4 itself by more than twice the standard error of that paired
  difference (it costs more copies).
- Then, and only then, a confirmation on the test set with seeds drawn for it.

    python -m research.studies.shifts RUNS_DIR [RUNS_DIR ...] OUT.json --data-dir ../shared/data

RUNS_DIR: folders that train.py --seeds filled (seeds.json and seed_N/model.pt); OUT.json: a runs/1 record whose runs'
test_acc is each network's own final held-out accuracy and whose readouts are the variants'. A batch trained without
--validation is scored on the test set instead: the confirmation.
"""
import argparse
import dataclasses
import json
import math
from pathlib import Path

import torch

import train
from checkpoint import load_network
from evaluate import probabilities
from mnist import hold_out, load_mnist, shifted, warp
from rundir import write_atomic

DEVICE = torch.device("cpu")
SHIFT4 = [(1, 0), (-1, 0), (0, 1), (0, -1)]  # (right, down) in pixels
SHIFT8 = SHIFT4 + [(1, 1), (1, -1), (-1, 1), (-1, -1)]
TURN5 = [-5.0, 5.0]  # degrees
VARIANTS = {  # name: (shifts, turns) besides the digit itself
    "shift4": (SHIFT4, []),
    "shift8": (SHIFT8, []),
    "turn5": ([], TURN5),
    "shift4_turn5": (SHIFT4, TURN5),
}
WHAT = {"shift4": "the digit and its 4 one-pixel shifts, probabilities averaged (5 copies)",
        "shift8": "the digit and its 8 one-pixel neighbours (9 copies)",
        "turn5": "the digit and the digit turned by -5 and +5 degrees (3 copies)",
        "shift4_turn5": "shift4's 5 copies and turn5's 2 turned ones (7 copies)"}


def turned(x, degrees):
    n = len(x)
    return warp(x, torch.full((n,), math.radians(degrees), device=x.device), torch.zeros(n, 2, device=x.device))


def readouts(net, x, y, precision):
    """{"plain": accuracy, variant: accuracy, ...} of one network on (x, y), in %."""
    copies = {(0, 0): probabilities(net, x, precision)}
    for right, down in SHIFT8:
        copies[(right, down)] = probabilities(net, shifted(x, right, down), precision)
    for degrees in TURN5:
        copies[degrees] = probabilities(net, turned(x, degrees), precision)
    accuracy = lambda probs: 100 * (probs.argmax(1) == y).sum().item() / len(y)
    result = {"plain": accuracy(copies[(0, 0)])}
    for name, (shifts, turns) in VARIANTS.items():
        result[name] = accuracy(torch.stack([copies[k] for k in [(0, 0), *shifts, *turns]]).mean(0))
    return result


def paired(runs, a, b=None):
    """Mean and standard error over seeds of readout a minus readout b (None: the plain prediction)."""
    d = [r["readouts"][a][-1] - (r["readouts"][b][-1] if b else r["test_acc"][-1]) for r in runs]
    m = sum(d) / len(d)
    return m, math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1) / len(d))


def conclusion(runs):
    """The plan's rule, applied: shift4 against plain; another variant only if it beats shift4 by > 2 SE."""
    m, se = paired(runs, "shift4")
    said = f"shift4 - plain = {m:+.4f} +- {se:.4f} % over {len(runs)} seeds"
    if not m > 2 * se:
        return f"{said}: not more than twice its standard error, so shifted copies do not help; nothing changes"
    better = [(name, *paired(runs, name, "shift4")) for name in VARIANTS if name != "shift4"]
    better = [(name, d, e) for name, d, e in better if d > 2 * e]
    if not better:
        return f"{said}: more than twice its standard error, and no variant beats shift4 by that much: shift4 it is"
    name, d, e = max(better, key=lambda b: b[1])
    return f"{said}, and {name} - shift4 = {d:+.4f} +- {e:.4f} %: {name} it is"


def confirmation(runs):
    """The chosen shift4 on the test set, by the same rule."""
    m, se = paired(runs, "shift4")
    verdict = "more than" if m > 2 * se else "not more than"
    return (f"on the test set, seeds drawn after the choice: shift4 - plain = {m:+.4f} +- {se:.4f} % over {len(runs)} "
            f"seeds, {verdict} twice its standard error: {'confirmed' if m > 2 * se else 'not confirmed'}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m research.studies.shifts")
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--data-dir", default="../shared/data")
    a = p.parse_args(argv)
    batches = [json.loads((d / "seeds.json").read_text()) for d in a.runs]
    first = batches[0]
    assert all(b["recipe"] == first["recipe"] and b["precision"] == first["precision"] for b in batches)
    held_out = first["recipe"]["validation"]  # 0: a batch on all training images, scored on the test set
    data = load_mnist(a.data_dir, DEVICE)
    data = hold_out(data, held_out) if held_out else data
    runs = []
    for folder, batch in zip(a.runs, batches):
        for run in batch["runs"]:
            net = load_network(folder / f"seed_{run['seed']}" / "model.pt")
            r = readouts(net, data.test_x, data.test_y, first["precision"])
            # the plain readout is the run's own last Test set line: the same network, the same numbers
            assert r.pop("plain") == run["test_acc"][-1], (run["seed"], run["test_acc"][-1])
            runs.append({"seed": run["seed"], "copy": None, "test_acc": [run["test_acc"][-1]],
                         "test_loss": [run["test_loss"][-1]], "seconds": run["seconds"],
                         "readouts": {k: [v] for k, v in r.items()}})
            print(json.dumps(runs[-1]), flush=True)
    where = "held-out images" if held_out else "the test set (the confirmation)"
    default = {**first["recipe"], "validation": 0} == dataclasses.asdict(train.Recipe(precision=first["precision"]))
    record = {**first, "title": f"shifted copies at prediction time, {len(runs)} random seeds, {where}",
              "recipe_name": "default" if default else first["recipe_name"],
              "conclusion": conclusion(runs) if held_out else confirmation(runs),
              "command": "; ".join(b["command"] for b in batches) + "; python -m research.studies.shifts "
                         + " ".join(map(str, a.runs)) + f" {a.out.name}",
              "test_acc_epochs": [first["recipe"]["epochs"] - 1], "readouts_what": WHAT, "runs": runs}
    record.pop("seeds_not_run", None)
    write_atomic(a.out, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))


if __name__ == "__main__":
    main()
