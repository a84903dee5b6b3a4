"""A run's checkpoint for train.py: everything it needs to continue exactly (weights, optimizer, schedule, weight
average, metrics, random-number generators), written whole or not at all, read back as plain data only, and only
into a run with the same recipe and seed.
"""
import dataclasses
import io
import re
import warnings

import torch

from errors import Fail
from rundir import write_atomic


def save_checkpoint(path, run, recipe, seed, metrics):
    state = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
             "averaged": run.averaged.state_dict() if run.averaged is not None else None,
             "scheduler": run.scheduler.state_dict(), "epoch": run.epoch - 1, "recipe": dataclasses.asdict(recipe),
             "seed": seed, "metrics": metrics, "rng": rng_states()}
    buffer = io.BytesIO()  # serialised in memory, so a full disk is an OSError, not torch's "unexpected pos"
    torch.save(state, buffer)
    write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def load_checkpoint(path, run, recipe, seed, device):
    """Restore everything `run` needs to continue exactly where the checkpoint's run stopped."""
    try:
        with warnings.catch_warnings():  # torch warns about odd pickles on stderr: the one line below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)  # plain data only: runs no code
        # "args": what checkpoints held before the recipe had a record of its own (every flag)
        saved = state["recipe"] if "recipe" in state else state["args"]
        check_same_recipe(saved, state.get("seed", state["metrics"]["seed"]), recipe, seed, path)
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        if run.averaged is not None:
            run.averaged.load_state_dict(state["averaged"])
        run.records[:] = state["metrics"]["epochs"]
        run.epoch = state["epoch"] + 1
        set_rng_states(state["rng"])
    except FileNotFoundError:
        raise Fail(f"--resume {path}: no such file: pass the checkpoint.pt printed when the run stopped")
    except Fail:
        raise
    except Exception as e:
        unsafe = re.search(r"GLOBAL ([\w.]+)", str(e))  # weights_only refused to import it, so nothing ran
        if unsafe:
            raise Fail(f"--resume {path} asks to load {unsafe[1]}, not just tensors and numbers: refused, "
                       "nothing in it was run; pass a checkpoint.pt written by this train.py")
        raise Fail(f"--resume {path} is not a checkpoint of this network ({type(e).__name__}): "
                   "pass a checkpoint.pt written by this train.py, or start without --resume")


def check_same_recipe(saved, saved_seed, recipe, seed, path):
    """A resumed run continues the checkpoint's run exactly, so its recipe and seed must be the checkpoint's: a knob
    that differs (or a default changed since) is refused, naming the flags that continue it."""
    def flag(name, value):
        dashed = name.replace("_", "-")
        return f"--{'' if value else 'no-'}{dashed}" if isinstance(value, bool) else f"--{dashed} {value}"

    ours = {**dataclasses.asdict(recipe), "seed": seed}
    missing = [k for k in ours if k not in {**saved, "seed": saved_seed}]
    if missing:
        raise Fail(f"--resume {path} was written by an older train.py that did not record --{missing[0].replace('_', '-')}: "
                   "it cannot be continued exactly; start a new run without --resume")
    theirs = {**{k: saved[k] for k in ours if k != "seed"}, "seed": saved_seed}
    differ = [k for k in ours if theirs[k] != ours[k]]
    if differ:
        raise Fail(f"--resume {path} was trained with {' '.join(flag(k, theirs[k]) for k in differ)}, this run "
                   f"has {' '.join(flag(k, ours[k]) for k in differ)}: pass the checkpoint's flags to "
                   "continue it exactly, or start a new run without --resume")


def rng_states():
    """The global random-number generators' states (CPU, and every GPU where there is CUDA)."""
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_states(states):
    torch.set_rng_state(states["cpu"].cpu())
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])
