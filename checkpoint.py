"""A run's checkpoint for train.py: everything it needs to continue exactly (weights, optimizer, schedule, weight
average, metrics, random-number generators), written whole or not at all, read back as plain data only, and only
into a run with the same recipe.
"""
import io
import re
import warnings

import torch

from mnist import Fail
from rundir import write_atomic


def save_checkpoint(path, model, optimizer, scheduler, averaged, epoch, args, metrics):
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "averaged": averaged.state_dict() if averaged is not None else None,
             "scheduler": scheduler.state_dict(), "epoch": epoch, "args": vars(args), "metrics": metrics,
             "rng": rng_states()}
    buffer = io.BytesIO()  # serialised in memory, so a full disk is an OSError, not torch's "unexpected pos"
    torch.save(state, buffer)
    write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def load_checkpoint(path, model, optimizer, scheduler, averaged, metrics, device, args):
    """Restore everything a run needs to continue exactly; returns the next epoch."""
    try:
        with warnings.catch_warnings():  # torch warns about odd pickles on stderr: the one line below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)  # plain data only: runs no code
        check_same_recipe({**state["args"], "seed": state["metrics"]["seed"]}, args, path)  # --seeds: the run's own
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if averaged is not None:
            averaged.load_state_dict(state["averaged"])
        metrics["epochs"] = state["metrics"]["epochs"]
        set_rng_states(state["rng"])
        return state["epoch"] + 1
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


# what a run's numbers depend on; a flag missing from an older checkpoint had the value it implies
RECIPE_FLAGS = ("epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay", "bn_decay", "step_size", "gamma",
                "dropout", "rotation", "shift", "scale", "average_epochs", "ema", "snapshots", "bn_images",
                "label_smoothing", "precision", "copies", "validation", "seed")
BEFORE_THE_FLAG = {"ema": 0.0, "scale": 0.0, "snapshots": 1}


def check_same_recipe(saved, args, path):
    """A resumed run continues the checkpoint's run exactly, so its recipe must be the checkpoint's: a flag that
    differs (or a default changed since, e.g. the EMA) is refused, naming the flags that continue it."""
    def flag(name, value):
        dashed = name.replace("_", "-")
        return f"--{'' if value else 'no-'}{dashed}" if isinstance(value, bool) else f"--{dashed} {value}"

    recorded = {k: saved.get(k, BEFORE_THE_FLAG.get(k)) for k in RECIPE_FLAGS}
    differ = [k for k, v in recorded.items() if v is not None and v != getattr(args, k)]
    if differ:
        raise Fail(f"--resume {path} was trained with {' '.join(flag(k, recorded[k]) for k in differ)}, this run "
                   f"has {' '.join(flag(k, getattr(args, k)) for k in differ)}: pass the checkpoint's flags to "
                   "continue it exactly, or start a new run without --resume")


def rng_states():
    """The global random-number generators' states (CPU, and every GPU where there is CUDA)."""
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_states(states):
    torch.set_rng_state(states["cpu"].cpu())
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])
