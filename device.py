"""The training device and its precision: the device --device asks for (auto: cuda, else mps, else cpu, saying so
when a GPU was given but cannot be used), bf16 autocast only where the hardware computes bf16 natively, and the
device's name for the records.
"""
import ctypes
import ctypes.util
import os
import platform
import re
import sys
from pathlib import Path

import torch

from errors import Fail

DEVICES = ("auto", "cpu", "cuda", "mps")  # --device; auto: cuda, else mps, else cpu
PRECISIONS = ("auto", "bf16", "fp32")  # --precision; auto: bf16 where the hardware computes it natively, else fp32
# NVIDIA's minimum driver for each CUDA major release (CUDA minor version compatibility:
# docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html).
MIN_DRIVER = {11: "450", 12: "525", 13: "580"}


def gpu_not_used_warning(environ, cuda_available, cuda_version, nvidia_devices):
    """The one line to print when NVIDIA GPUs were given to this process (a container's --gpus, Kubernetes or the
    NVIDIA runtime set NVIDIA_VISIBLE_DEVICES; CDI, --device and bare metal show /dev/nvidiaN) but torch cannot use
    them, so that --device auto would train on the CPU with nothing said; else None. cuda_version: torch.version.cuda
    (None for a CPU-only build of torch); nvidia_devices: the /dev/nvidiaN device files there are."""
    visible = environ.get("NVIDIA_VISIBLE_DEVICES", "").strip()
    requested = visible.lower() not in ("", "void", "none")  # void: Docker's --gpus 0, and CDI's setting
    if cuda_available or not (requested or nvidia_devices):
        return None
    what = f"NVIDIA_VISIBLE_DEVICES={visible}" if requested else sorted(map(str, nvidia_devices))[0]
    if cuda_version is None:
        why = "this torch is a CPU-only build: install a CUDA build of torch"
    else:
        major = int(cuda_version.split(".")[0])
        driver = (f"an NVIDIA driver of the R{MIN_DRIVER[major]} series or newer" if major in MIN_DRIVER
                  else f"an NVIDIA driver for CUDA {major}")
        why = (f"this torch is built for CUDA {cuda_version} and needs {driver} on the host (nvidia-smi shows the "
               "driver's version), and in Docker the NVIDIA Container Toolkit with docker run --gpus all")
    return f"warning: an NVIDIA GPU was given ({what}) but torch cannot use it, so this run trains on the CPU: {why}"


def pick_device(name):
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if name == "auto":
        name = "cuda" if available["cuda"] else "mps" if available["mps"] else "cpu"
        warning = name == "cpu" and gpu_not_used_warning(os.environ, available["cuda"], torch.version.cuda,
                                                          list(Path("/dev").glob("nvidia[0-9]*")))
        if warning:
            print(warning, file=sys.stderr)
    if not available[name]:
        raise Fail(f"--device {name} was requested but is not available here: use --device auto or --device cpu")
    torch.backends.cudnn.benchmark = name == "cuda"  # fixed shapes: let cuDNN pick its fastest kernels
    keep_freed_memory()
    return torch.device(name)


def keep_freed_memory():
    """Let glibc keep the memory a training step frees for the next step instead of returning each freed block
    over its adaptive threshold to the kernel, to be page-faulted in again: on a 2-core Xeon a 1-2 epoch run
    took 180,000-450,000 page faults fewer and about 3 % less time an epoch, in bf16 and fp32, with the same
    numbers. Linux with glibc only; elsewhere (macOS, Windows, musl) nothing changes."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20) and mallopt(M_TRIM_THRESHOLD, 256 << 20))


def pick_precision(requested, device):
    """(precision, why); auto: see native_precision. On CUDA, fp32 means IEEE fp32 as on a CPU, not TF32
    (cuDNN's default for fp32 convolutions), so GPU and CPU fp32 runs train alike."""
    precision, why = native_precision(device) if requested == "auto" else (requested, "--precision " + requested)
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = precision != "fp32"
    return precision, why


def native_precision(device):
    """bf16 autocast only where the hardware computes bf16 natively; elsewhere it is emulated and slower
    than fp32 (3.5x a step on an AVX2-only CPU, and on GPUs before compute capability 8.0)."""
    if device.type == "cuda":
        cc = torch.cuda.get_device_capability(device)
        native = cc >= (8, 0)
        return ("bf16" if native else "fp32"), (f"{torch.cuda.get_device_name(device)}, compute capability "
                                                f"{cc[0]}.{cc[1]}: bf16 {'native' if native else 'emulated'}")
    if device.type == "cpu":
        capability = torch.backends.cpu.get_cpu_capability()
        units = [name for name, has in (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))
                 if getattr(torch.cpu, has, lambda: False)()]
        # ONEDNN_MAX_CPU_ISA caps oneDNN's kernels below the hardware: below the bf16 ISAs, bf16 is emulated
        cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
        if cap not in ("ALL", "DEFAULT") and not any(k in cap for k in ("BF16", "AMX", "FP16", "AVX10")):
            units = []
            capability += f", ONEDNN_MAX_CPU_ISA={cap}"
        if units:
            return "bf16", f"CPU with {' and '.join(units)} (torch capability {capability}): bf16 native"
        return "fp32", f"CPU without AMX or AVX512-BF16 (torch capability {capability}): bf16 emulated"
    return "fp32", f"{device.type}: bf16 autocast not used"


def autocast(device, precision):
    enabled = precision == "bf16" and device.type in ("cpu", "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:  # what lscpu calls the model name
        cpuinfo = Path("/proc/cpuinfo").read_text()
        return re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)[1].strip()
    except (OSError, TypeError):
        return platform.processor() or platform.machine() or None

