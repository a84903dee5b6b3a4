"""Time this project's pipeline against the classic one, in one process, epochs alternating.

    python benchmark.py --data-dir ../shared/data                 # 3 epochs each, CPU or GPU
    python benchmark.py --data-dir ../shared/data --epochs 15     # full runs: compare final accuracy

classic: torchvision RandomRotation/ToTensor/Normalize + DataLoader, fp32, the published recipe's
         nn.Dropout(0.01) and batch 128, torch's nn.MaxPool2d, test batch 1000, loss read back every step
         (as every published version of this exercise does).
ours:    train.py's own epoch (train_and_test): data on the device as tensors, batched augmentation,
         --precision auto (bf16 autocast where the hardware computes bf16, else fp32), the default recipe:
         its first --epochs epochs are those of `python train.py --seed N` (same numbers on the same
         machine), and with --epochs 15 it is that whole run, the weight averaging of its last epochs included.
Both use the same network, seed, learning rate schedule and weight decay, each its own batch size (classic
128 as published, ours train.py's default), as each is run by its users. The report names
the CPU (or GPU), torch's CPU capability and each pipeline's precision, gives each pipeline's epochs as a
median with their spread, and a 15-epoch job's time with start-up (imports, data) included: the epochs
measured, and each one not measured at the median of the measured ones, plus, for ours, the measured cost of
weight averaging in each averaged epoch that was not measured (a job averages in epochs 6-14 only).
"""
import time

START = time.perf_counter()  # before the imports: a 15-epoch job pays for them too

import argparse
import contextlib
import io
import math
import platform
import resource
import statistics
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from tqdm import tqdm

from checkpoint import rng_states, set_rng_states
import mnist
import train
from model import MaxPool2d


CLASSIC_TEST_BATCH_SIZE = 1000  # as published (pytorch/examples' mnist, and the exercise's notebooks)


def classic_loaders(args, device):
    train_tf = transforms.Compose([transforms.RandomRotation((-args.rotation, args.rotation), fill=(0,)),
                                   transforms.ToTensor(), transforms.Normalize((mnist.MNIST_MEAN,), (mnist.MNIST_STD,))])
    test_tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mnist.MNIST_MEAN,), (mnist.MNIST_STD,))])
    # their own generator: the loaders must not draw from the global RNG that `ours` trains with
    kw = dict(num_workers=args.workers, pin_memory=device.type == "cuda", persistent_workers=args.workers > 0,
              generator=torch.Generator().manual_seed(args.seed))
    return (DataLoader(datasets.MNIST(args.data_dir, train=True, transform=train_tf), args.batch_size,
                       shuffle=True, **kw),
            DataLoader(datasets.MNIST(args.data_dir, train=False, transform=test_tf), CLASSIC_TEST_BATCH_SIZE, **kw))


def with_torchs_max_pool(run):
    """The published network pools with torch's nn.MaxPool2d, not model.py's faster CPU forward of it."""
    net = run[0]
    for name, module in net.features.named_children():
        if isinstance(module, MaxPool2d):
            setattr(net.features, name, nn.MaxPool2d(2, 2))
    return run


def classic_epoch(model, optimizer, loaders, device):
    """The published loop: PIL transforms in a DataLoader, fp32, a host sync every step."""
    train_loader, test_loader = loaders
    model.train()
    bar = tqdm(train_loader, file=sys.stdout)
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
    return 100 * correct / len(test_loader.dataset)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    return train.exit_status(lambda: benchmark(argv), lambda e: print(
        "\ninterrupted: the benchmark writes no files", file=sys.stderr))


def benchmark(argv):
    p = train.ArgumentParser(prog="benchmark.py", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="./data")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.add_argument("--epochs", type=int, default=3,
                   help=f"epochs per pipeline, 1 to {train.EPOCHS} (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="classic DataLoader workers (default: %(default)s)")
    p.add_argument("--classic-dropout", type=float, default=0.01,
                   help="dropout of the classic run (default: %(default)s, the published recipe)")
    p.add_argument("--classic-batch-size", type=int, default=128,
                   help="batch size of the classic run (default: %(default)s, the published recipe)")
    p.add_argument("--seed", type=int, default=1)
    bench = p.parse_args(argv)
    if not 1 <= bench.epochs <= train.EPOCHS:
        p.error(f"--epochs must be 1 to {train.EPOCHS} (the job that is timed): got {bench.epochs}")
    # train.py's defaults: a 15-epoch run, of which this times the first --epochs epochs
    args = train.parse_args(["--seed", str(bench.seed), "--data-dir", bench.data_dir])
    args.workers = bench.workers
    device = train.pick_device(bench.device)
    args.precision, args.precision_why = train.pick_precision(args.precision, device)
    classic = argparse.Namespace(**{**vars(args), "dropout": bench.classic_dropout, "average_epochs": 0,
                                    "precision": "fp32", "batch_size": bench.classic_batch_size})
    imports = time.perf_counter() - START
    # each pipeline's own start-up: ours parses MNIST into device tensors, classic builds its loaders
    # and waits for the first batch (the DataLoader workers' start)
    t0 = time.perf_counter()
    data = mnist.load_mnist(args.data_dir, device)
    setup = {"ours": time.perf_counter() - t0}
    t0 = time.perf_counter()
    loaders = classic_loaders(classic, device)
    next(iter(loaders[0]))
    setup["classic"] = time.perf_counter() - t0
    runs = {"classic": with_torchs_max_pool(train.build(classic, args.seed, device)),
            "ours": train.build(args, args.seed, device)}
    # each pipeline draws from its own copy of the global RNG (classic's dropout would otherwise shift ours'
    # batches), so `ours` here is exactly `python train.py --seed N` on the same machine
    rng = {name: rng_states() for name in runs}
    seconds = {name: [] for name in runs}
    accuracy = {}
    peak_gpu = {name: 0 for name in runs}

    for epoch in range(bench.epochs):
        for name, (model, optimizer, scheduler, averaged) in runs.items():  # alternate, so both see the same machine
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            set_rng_states(rng[name])
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # keep the progress bars out of the report
                if name == "classic":
                    accuracy[name] = classic_epoch(model, optimizer, loaders, device)
                else:
                    accuracy[name] = train.train_and_test(epoch, model, optimizer, averaged, data, args, device)["test_acc"]
            if device.type == "cuda":
                torch.cuda.synchronize()
                peak_gpu[name] = max(peak_gpu[name], torch.cuda.max_memory_allocated())
            seconds[name].append(time.perf_counter() - t0)
            rng[name] = rng_states()
            scheduler.step()
            print(f"epoch {epoch} {name:8s} {seconds[name][-1]:7.2f} s  test {accuracy[name]:.2f} %", flush=True)

    averaged_from = args.epochs - args.average_epochs  # ours' first epoch with weight averaging
    untimed_tail = bench.epochs < args.epochs and args.average_epochs
    tail = time_tail(args, runs["ours"], data, device) if untimed_tail else 0.0
    # per epoch: ours' epochs without weight averaging (a job's first 6), as classic's are
    plain = {"classic": seconds["classic"], "ours": before_tail(seconds["ours"], averaged_from)}
    median = {name: statistics.median(s) for name, s in plain.items()}
    job = {"classic": job_seconds(imports + setup["classic"], seconds["classic"], args.epochs),
           "ours": job_seconds(imports + setup["ours"], seconds["ours"], args.epochs, tail, averaged_from)}
    print(f"\ndevice: {device_name(device)}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
          f"epochs {bench.epochs}")
    print(f"precision: classic fp32 (as published); ours {args.precision} ({args.precision_why})")
    print(f"batch size: classic {classic.batch_size}, ours {args.batch_size}")
    if tail:
        print(f"ours' weight averaging in a job's epochs {averaged_from}-{args.epochs - 1}: +{tail:.2f} s an epoch "
              "(timed on its own, added to the job's untimed epochs)")
    print(f"start-up: imports {imports:.1f} s (both), ours {setup['ours']:.1f} s (MNIST to tensors), "
          f"classic {setup['classic']:.1f} s (loaders, first batch)")
    print(f"{'pipeline':10s} {'s/epoch':>8s} {'(min-max)':>13s} {'15-epoch job':>13s} {'test %':>7s}" +
          ("  peak GPU MiB" if device.type == "cuda" else ""))
    for name in runs:
        gpu = f"  {peak_gpu[name] / 2**20:12.0f}" if device.type == "cuda" else ""
        spread = f"({min(plain[name]):.2f}-{max(plain[name]):.2f})"
        print(f"{name:10s} {median[name]:8.2f} {spread:>13s} {job[name]:12.0f}s {accuracy[name]:7.2f}{gpu}")
    print(f"speed-up: {median['classic'] / median['ours']:.2f}x per epoch (median, train + test), "
          f"{job['classic'] / job['ours']:.2f}x for a {args.epochs}-epoch job (start-up included"
          f"{', all epochs timed' if bench.epochs == args.epochs else ''})")
    print(f"peak RSS of this process (both pipelines, data loaded twice): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def job_seconds(startup, seconds, epochs, tail=0.0, tail_from=None):
    """A whole `epochs`-epoch job: start-up, the epochs timed, and each epoch not timed at the median of the
    timed epochs before tail_from, plus `tail` seconds for each untimed epoch from tail_from on."""
    tail_from = epochs if tail_from is None else tail_from
    typical = statistics.median(before_tail(seconds, tail_from))
    return startup + sum(seconds) + sum(typical + (tail if e >= tail_from else 0.0) for e in range(len(seconds), epochs))


def before_tail(seconds, tail_from):
    """The timed epochs before the weight-averaging tail (all of them where every timed epoch averaged)."""
    return seconds[:tail_from] or seconds


def time_tail(args, run, data, device, repeats=3):
    """Seconds that weight averaging adds to each of a job's last epochs: the snapshots of the weights, and
    BatchNorm statistics re-estimated on --bn-images training images (the test pass costs what it always does).
    Timed on ours' averaged copy after its timed epochs, which never use it again."""
    model, _, _, averaged = run
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in train.averaging_steps(math.ceil(len(data[0]) / args.batch_size), args):
            train.update_average(averaged, model, args.ema)
        train.with_fresh_bn(averaged, data[0][:args.bn_images], args, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def device_name(device):
    """The processor or GPU the figures belong to, and torch's CPU capability (AVX2, AVX512, ...)."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{device.type} ({model}, torch capability {torch.backends.cpu.get_cpu_capability()})"


if __name__ == "__main__":
    sys.exit(main())
