"""Time this project's pipeline against the classic one, in one process, epochs alternating.

    python benchmark.py --data-dir ../shared/data                 # 3 epochs each, CPU or GPU
    python benchmark.py --data-dir ../shared/data --epochs 15     # full runs: compare final accuracy

classic: torchvision RandomRotation/ToTensor/Normalize + DataLoader, fp32, the published recipe's
         nn.Dropout(0.01) and batch 128, loss read back every step (as every published version of this
         exercise does).
ours:    train.py's own epoch (train_and_test): data on the device as tensors, batched augmentation,
         --precision auto (bf16 autocast where the hardware computes bf16, else fp32), the default recipe
         (weight averaging over its last epochs included); with --epochs 15 it is exactly
         `python train.py --seed N` (same numbers on the same machine).
Both use the same network, seed, learning rate schedule and weight decay, each its own batch size (classic
128 as published, ours train.py's default), as each is run by its users. The report names
the CPU (or GPU), torch's CPU capability and each pipeline's precision, gives each pipeline's epochs as a
median with their spread, and a 15-epoch job's time with start-up (imports, data) included.
"""
import time

START = time.perf_counter()  # before the imports: a 15-epoch job pays for them too

import argparse
import contextlib
import io
import platform
import resource
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from tqdm import tqdm

import mnist
import train


def classic_loaders(args, device):
    train_tf = transforms.Compose([transforms.RandomRotation((-args.rotation, args.rotation), fill=(0,)),
                                   transforms.ToTensor(), transforms.Normalize((mnist.MNIST_MEAN,), (mnist.MNIST_STD,))])
    test_tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mnist.MNIST_MEAN,), (mnist.MNIST_STD,))])
    # their own generator: the loaders must not draw from the global RNG that `ours` trains with
    kw = dict(num_workers=args.workers, pin_memory=device.type == "cuda", persistent_workers=args.workers > 0,
              generator=torch.Generator().manual_seed(args.seed))
    return (DataLoader(datasets.MNIST(args.data_dir, train=True, transform=train_tf), args.batch_size,
                       shuffle=True, **kw),
            DataLoader(datasets.MNIST(args.data_dir, train=False, transform=test_tf), args.test_batch_size, **kw))


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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="./data")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.add_argument("--epochs", type=int, default=3, help="epochs per pipeline (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="classic DataLoader workers (default: %(default)s)")
    p.add_argument("--classic-dropout", type=float, default=0.01,
                   help="dropout of the classic run (default: %(default)s, the published recipe)")
    p.add_argument("--classic-batch-size", type=int, default=128,
                   help="batch size of the classic run (default: %(default)s, the published recipe)")
    p.add_argument("--seed", type=int, default=1)
    bench = p.parse_args(argv)
    # train.py's defaults, with its schedule's tail (weight averaging) on this run's last epochs
    args = train.parse_args(["--seed", str(bench.seed), "--data-dir", bench.data_dir, "--epochs", str(bench.epochs)])
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
    runs = {"classic": train.build(classic, args.seed, device), "ours": train.build(args, args.seed, device)}
    # each pipeline draws from its own copy of the global RNG (classic's dropout would otherwise shift ours'
    # batches), so `ours` here is exactly `python train.py --seed N` on the same machine
    rng = {name: train.rng_states() for name in runs}
    seconds = {name: [] for name in runs}
    accuracy = {}
    peak_gpu = {name: 0 for name in runs}

    for epoch in range(bench.epochs):
        for name, (model, optimizer, scheduler, averaged) in runs.items():  # alternate, so both see the same machine
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            train.set_rng_states(rng[name])
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
            rng[name] = train.rng_states()
            scheduler.step()
            print(f"epoch {epoch} {name:8s} {seconds[name][-1]:7.2f} s  test {accuracy[name]:.2f} %", flush=True)

    median = {name: statistics.median(s) for name, s in seconds.items()}
    job = {name: imports + setup[name] + 15 * median[name] for name in runs}  # a whole `python train.py`
    print(f"\ndevice: {device_name(device)}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
          f"epochs {bench.epochs}")
    print(f"precision: classic fp32 (as published); ours {args.precision} ({args.precision_why})")
    print(f"batch size: classic {classic.batch_size}, ours {args.batch_size}")
    print(f"start-up: imports {imports:.1f} s (both), ours {setup['ours']:.1f} s (MNIST to tensors), "
          f"classic {setup['classic']:.1f} s (loaders, first batch)")
    print(f"{'pipeline':10s} {'s/epoch':>8s} {'(min-max)':>13s} {'15-epoch job':>13s} {'test %':>7s}" +
          ("  peak GPU MiB" if device.type == "cuda" else ""))
    for name in runs:
        gpu = f"  {peak_gpu[name] / 2**20:12.0f}" if device.type == "cuda" else ""
        spread = f"({min(seconds[name]):.2f}-{max(seconds[name]):.2f})"
        print(f"{name:10s} {median[name]:8.2f} {spread:>13s} {job[name]:12.0f}s {accuracy[name]:7.2f}{gpu}")
    print(f"speed-up: {median['classic'] / median['ours']:.2f}x per epoch (median, train + test), "
          f"{job['classic'] / job['ours']:.2f}x for a 15-epoch job (start-up included)")
    print(f"peak RSS of this process (both pipelines, data loaded twice): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


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
    main()
