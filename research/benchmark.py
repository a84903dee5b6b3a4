"""Time this project's pipeline against the classic one, in one process, epochs alternating.

    python -m research.benchmark --data-dir ../shared/data                 # 3 epochs each, CPU or GPU
    python -m research.benchmark --data-dir ../shared/data --epochs 15     # full runs: compare final accuracy
    python -m research.benchmark --data-dir ../shared/data --out results/benchmark/NAME.json  # keep the figures

classic: torchvision RandomRotation/ToTensor/Normalize + DataLoader, fp32, the published recipe's
         nn.Dropout(0.01) and batch 128, torch's nn.MaxPool2d, test batch 1000, loss read back every step
         (as every published version of this exercise does).
ours:    train.py's own epochs (train.new_run, train.train_epoch): data on the device as tensors, batched
         augmentation, --precision auto (bf16 autocast where the hardware computes bf16, else fp32), the default
         recipe: its first --epochs epochs are those of `python train.py --seed N` (same numbers on the same
         machine), and with --epochs 15 it is that whole run, the weight averaging of its last epochs included.
Both use the same network, seed, learning rate schedule and weight decay, each its own batch size (classic
128 as published, ours train.py's default), as each is run by its users. The report names
the CPU (or GPU), torch's CPU capability and each pipeline's precision, gives each pipeline's epochs as a
median with their spread, and a 15-epoch job's time with start-up (imports, data) included: the epochs
measured, and each one not measured at the median of the measured ones, plus, for ours, the measured cost of
weight averaging in each averaged epoch that was not measured (a job averages in its last epochs only).
With --out, the figures are also written as a benchmark/1 record (research/records.py).
"""
import time

START = time.perf_counter()  # before the imports: a 15-epoch job pays for them too

import dataclasses
import json
import math
import resource
import shlex
import statistics
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from tqdm import tqdm

import mnist
import train
from batch import provenance
from device import DEVICES, device_name
from checkpoint import rng_states, set_rng_states
from errors import Fail, exit_status
from model import MaxPool2d
from rundir import write_atomic

CLASSIC_TEST_BATCH_SIZE = 1000  # as published (pytorch/examples' mnist, and the exercise's notebooks)


def classic_loaders(bench, recipe, device):
    train_tf = transforms.Compose([transforms.RandomRotation((-recipe.rotation, recipe.rotation), fill=(0,)),
                                   transforms.ToTensor(), transforms.Normalize((mnist.MNIST_MEAN,), (mnist.MNIST_STD,))])
    test_tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mnist.MNIST_MEAN,), (mnist.MNIST_STD,))])
    # their own generator: the loaders must not draw from the global RNG that `ours` trains with
    kw = dict(num_workers=bench.workers, pin_memory=device.type == "cuda", persistent_workers=bench.workers > 0,
              generator=torch.Generator().manual_seed(bench.seed))
    return (DataLoader(datasets.MNIST(bench.data_dir, train=True, transform=train_tf), recipe.batch_size,
                       shuffle=True, **kw),
            DataLoader(datasets.MNIST(bench.data_dir, train=False, transform=test_tf), CLASSIC_TEST_BATCH_SIZE, **kw))


def with_torchs_max_pool(run):
    """The published network pools with torch's nn.MaxPool2d, not model.py's faster CPU forward of it."""
    for name, module in run.model.features.named_children():
        if isinstance(module, MaxPool2d):
            setattr(run.model.features, name, nn.MaxPool2d(2, 2))
    return run


def classic_epoch(run, loaders, device):
    """The published loop: PIL transforms in a DataLoader, fp32, a host sync every step (its progress bar's loss,
    read back even though the bar is not shown here)."""
    model, optimizer = run.model, run.optimizer
    train_loader, test_loader = loaders
    model.train()
    bar = tqdm(train_loader, file=sys.stdout, disable=True)
    for batch_id, (x, y) in enumerate(bar):
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        output = model(x)
        loss = F.nll_loss(output, y)
        loss.backward()
        optimizer.step()
        bar.set_description(f"Loss={loss.item():.4f} Batch_id={batch_id}")
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in test_loader:
            correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
    run.scheduler.step()
    return 100 * correct / len(test_loader.dataset)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    return exit_status(lambda: benchmark(argv), lambda e: print(
        "\ninterrupted: the benchmark writes no files", file=sys.stderr))


def parse_args(argv):
    p = train.ArgumentParser(prog="python -m research.benchmark", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="./data")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--epochs", type=int, default=3,
                   help=f"epochs per pipeline, 1 to {train.Recipe.epochs} (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="classic DataLoader workers (default: %(default)s)")
    p.add_argument("--classic-dropout", type=float, default=0.01,
                   help="dropout of the classic run (default: %(default)s, the published recipe)")
    p.add_argument("--classic-batch-size", type=int, default=128,
                   help="batch size of the classic run (default: %(default)s, the published recipe)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, metavar="FILE.json",
                   help="also write the figures there as a benchmark/1 record (refused if the file exists)")
    bench = p.parse_args(argv)
    if not 1 <= bench.epochs <= train.Recipe.epochs:
        p.error(f"--epochs must be 1 to {train.Recipe.epochs} (the job that is timed): got {bench.epochs}")
    if bench.out and bench.out.exists():
        raise Fail(f"--out {bench.out} exists: pass a new file name (a record is never replaced)")
    return bench


def benchmark(argv):
    bench = parse_args(argv)
    device = train.pick_device(bench.device)
    # train.py's default: a 15-epoch run, of which this times the first --epochs epochs
    recipe = train.Recipe()
    recipe.precision, precision_why = train.pick_precision(recipe.precision, device)
    classic = dataclasses.replace(recipe, dropout=bench.classic_dropout, average_epochs=0, precision="fp32",
                                  batch_size=bench.classic_batch_size)
    imports = time.perf_counter() - START
    # each pipeline's own start-up: ours parses MNIST into device tensors, classic builds its loaders
    # and waits for the first batch (the DataLoader workers' start)
    t0 = time.perf_counter()
    data = mnist.load_mnist(bench.data_dir, device)
    setup = {"ours": time.perf_counter() - t0}
    t0 = time.perf_counter()
    loaders = classic_loaders(bench, classic, device)
    next(iter(loaders[0]))
    setup["classic"] = time.perf_counter() - t0
    runs = {"classic": with_torchs_max_pool(train.new_run(classic, bench.seed, device)),
            "ours": train.new_run(recipe, bench.seed, device)}
    # each pipeline draws from its own copy of the global RNG (classic's dropout would otherwise shift ours'
    # batches), so `ours` here is exactly `python train.py --seed N` on the same machine
    rng = {name: rng_states() for name in runs}
    seconds = {name: [] for name in runs}
    accuracy = {name: [] for name in runs}
    peak_gpu = {name: 0 for name in runs}
    log = []

    def say(line=""):
        print(line, flush=True)
        log.append(line)

    for epoch in range(bench.epochs):
        for name, run in runs.items():  # alternate, so both see the same machine
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            set_rng_states(rng[name])
            t0 = time.perf_counter()
            if name == "classic":
                accuracy[name].append(classic_epoch(run, loaders, device))
            else:
                accuracy[name].append(train.train_epoch(run, recipe, data, device, log=False)["test_acc"])
            if device.type == "cuda":
                torch.cuda.synchronize()
                peak_gpu[name] = max(peak_gpu[name], torch.cuda.max_memory_allocated())
            seconds[name].append(time.perf_counter() - t0)
            rng[name] = rng_states()
            say(f"epoch {epoch} {name:8s} {seconds[name][-1]:7.2f} s  test {accuracy[name][-1]:.2f} %")

    averaged_from = recipe.epochs - recipe.average_epochs  # ours' first epoch with weight averaging
    untimed_tail = bench.epochs < recipe.epochs and recipe.average_epochs
    tail = time_tail(recipe, runs["ours"], data, device) if untimed_tail else 0.0
    # per epoch: ours' epochs without weight averaging (a job's first 6), as classic's are
    plain = {"classic": seconds["classic"], "ours": before_tail(seconds["ours"], averaged_from)}
    median = {name: statistics.median(s) for name, s in plain.items()}
    job = {"classic": job_seconds(imports + setup["classic"], seconds["classic"], recipe.epochs),
           "ours": job_seconds(imports + setup["ours"], seconds["ours"], recipe.epochs, tail, averaged_from)}
    capability = torch.backends.cpu.get_cpu_capability()
    where = f"cuda ({device_name(device)})" if device.type == "cuda" else \
        f"{device.type} ({device_name(device)}, torch capability {capability})"
    say()
    say(f"device: {where}  torch {torch.__version__}  threads {torch.get_num_threads()}  epochs {bench.epochs}")
    say(f"precision: classic fp32 (as published); ours {recipe.precision} ({precision_why})")
    say(f"batch size: classic {classic.batch_size}, ours {recipe.batch_size}")
    if tail:
        say(f"ours' weight averaging in a job's epochs {averaged_from}-{recipe.epochs - 1}: +{tail:.2f} s an epoch "
            "(timed on its own, added to the job's untimed epochs)")
    say(f"start-up: imports {imports:.1f} s (both), ours {setup['ours']:.1f} s (MNIST to tensors), "
        f"classic {setup['classic']:.1f} s (loaders, first batch)")
    say(f"{'pipeline':10s} {'s/epoch':>8s} {'(min-max)':>13s} {'15-epoch job':>13s} {'test %':>7s}" +
        ("  peak GPU MiB" if device.type == "cuda" else ""))
    for name in runs:
        gpu = f"  {peak_gpu[name] / 2**20:12.0f}" if device.type == "cuda" else ""
        spread = f"({min(plain[name]):.2f}-{max(plain[name]):.2f})"
        say(f"{name:10s} {median[name]:8.2f} {spread:>13s} {job[name]:12.0f}s {accuracy[name][-1]:7.2f}{gpu}")
    speedup = {"epoch": median["classic"] / median["ours"], "job": job["classic"] / job["ours"]}
    say(f"speed-up: {speedup['epoch']:.2f}x per epoch (median, train + test), {speedup['job']:.2f}x for a "
        f"{recipe.epochs}-epoch job (start-up included{', all epochs timed' if bench.epochs == recipe.epochs else ''})")
    say(f"peak RSS of this process (both pipelines, data loaded twice): "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if bench.out:
        pipelines = {name: {"precision": r.precision, "precision_why": precision_why if name == "ours" else "as published",
                            "batch_size": r.batch_size, "epoch_seconds": seconds[name],
                            "median_epoch_seconds": median[name], "job_seconds": job[name],
                            "test_acc": accuracy[name]} for name, r in (("classic", classic), ("ours", recipe))}
        record = {"schema": "benchmark/1", **provenance(device),
                  "command": shlex.join(["python", "-m", "research.benchmark", *argv]),
                  "note": "", "recipe_name": "default", "epochs": bench.epochs, "pipelines": pipelines,
                  "speedup_job": speedup["job"], "speedup_epoch": speedup["epoch"], "log": "\n".join(log) + "\n"}
        write_atomic(bench.out, lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))
        print(f"record: {bench.out}")


def job_seconds(startup, seconds, epochs, tail=0.0, tail_from=None):
    """A whole `epochs`-epoch job: start-up, the epochs timed, and each epoch not timed at the median of the
    timed epochs before tail_from, plus `tail` seconds for each untimed epoch from tail_from on."""
    tail_from = epochs if tail_from is None else tail_from
    typical = statistics.median(before_tail(seconds, tail_from))
    return startup + sum(seconds) + sum(typical + (tail if e >= tail_from else 0.0) for e in range(len(seconds), epochs))


def before_tail(seconds, tail_from):
    """The timed epochs before the weight-averaging tail (all of them where every timed epoch averaged)."""
    return seconds[:tail_from] or seconds


def time_tail(recipe, run, data, device, repeats=3):
    """Seconds that weight averaging adds to each of a job's last epochs: the snapshots of the weights, and
    BatchNorm statistics re-estimated on --bn-images training images (the test pass costs what it always does).
    Timed on ours' averaged copy after its timed epochs, which never use it again."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in train.averaging_steps(math.ceil(len(data.train_x) / recipe.batch_size), recipe):
            train.update_average(run.averaged, run.model, recipe.ema)
        train.with_fresh_bn(run.averaged, data.train_x[:recipe.bn_images], recipe, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())
