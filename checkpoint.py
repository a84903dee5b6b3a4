"""A run's checkpoint for train.py: everything it needs to continue exactly (weights, optimizer, schedule, weight
average, metrics, random-number generators), written whole or not at all, read back as plain data only, and only
into a run with the same recipe and seed. And the trained network itself, model.pt: a plain state_dict of Net,
which evaluate.py and predict.py load (from a finished run's checkpoint.pt too).
"""
import dataclasses
import io
import re
import warnings

import torch

from errors import OPEN_ERRORS, Fail, cannot_open
from model import Net
from rundir import write_atomic


def save_checkpoint(path, run, recipe, seed, metrics):
    state = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
             "averaged": run.averaged.state_dict() if run.averaged is not None else None,
             "scheduler": run.scheduler.state_dict(), "epoch": run.epoch - 1, "recipe": dataclasses.asdict(recipe),
             "seed": seed, "metrics": metrics, "rng": rng_states()}
    save(state, path)


def save_model(path, network):
    """model.pt: the network's state_dict, nothing else: Net().load_state_dict(torch.load(path, weights_only=True))."""
    save(network.state_dict(), path)


def save(state, path):
    buffer = io.BytesIO()  # serialised in memory, so a full disk is an OSError, not torch's "unexpected pos"
    torch.save(state, buffer)
    write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def load_network(path, device="cpu"):
    """The trained network (a Net in eval mode on `device`) from a model.pt, or from a finished run's checkpoint.pt:
    the weights its last epoch tested. Anything else is a Fail naming the file and what to pass instead."""
    state = load_plain(path, device, str(path), "a model.pt or a finished run's checkpoint.pt, written by train.py")
    if isinstance(state, dict) and "model" in state and ("recipe" in state or "args" in state):
        state = tested_weights(state, path)
    net = Net()
    try:
        net.load_state_dict(state)
    except Exception as e:  # another network's keys or shapes, or not a state_dict at all
        why = str(e).strip().splitlines()[0][:120] if isinstance(e, RuntimeError) else type(e).__name__
        raise Fail(f"{path} holds the weights of another network, not this 7,830-parameter Net ({why}): "
                   "pass a model.pt written by train.py") from None
    return net.to(device).eval()


def tested_weights(state, path):
    """A checkpoint's tested weights: its weight average's (without AveragedModel's "module." prefix and counter)
    when its last epoch tested the average, else the trained weights."""
    recipe = state.get("recipe") or state["args"]
    done, epochs = state["epoch"] + 1, recipe["epochs"]
    if recipe.get("copies", 1) > 1:
        raise Fail(f"{path} holds {recipe['copies']} networks side by side (--copies): train one network "
                   "(without --copies) to get its weights")
    if done < epochs:
        raise Fail(f"{path} is the checkpoint of an unfinished run ({done} of {epochs} epochs): finish it with "
                   f"python train.py --resume {path} (and the flags that started it), then pass its model.pt")
    if state.get("averaged") is None or not recipe.get("average_epochs"):
        return state["model"]
    return {k.removeprefix("module."): v for k, v in state["averaged"].items() if k != "n_averaged"}


def load_plain(path, device, name, wanted):
    """torch.load(path, weights_only=True): tensors, numbers and containers only, no code run. Its failures are Fails
    that call the file `name` and ask for `wanted`."""
    try:
        with warnings.catch_warnings():  # torch warns about odd pickles on stderr: the one line below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=device, weights_only=True)
    except OPEN_ERRORS as e:
        raise cannot_open(name, e, f"pass {wanted}") from None
    except Exception as e:
        unsafe = re.search(r"GLOBAL ([\w.]+)", str(e))  # weights_only refused to import it, so nothing ran
        if unsafe:
            raise Fail(f"{name} asks to load {unsafe[1]}, not just tensors and numbers: refused, nothing in it "
                       f"was run; pass {wanted}") from None
        raise Fail(f"{name} is not a file torch wrote, or it is damaged or truncated ({type(e).__name__}): "
                   f"pass {wanted}") from None


def load_checkpoint(path, run, recipe, seed, device):
    """Restore everything `run` needs to continue exactly where the checkpoint's run stopped."""
    state = load_plain(path, device, f"--resume {path}", "the checkpoint.pt printed when the run stopped")
    try:
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
    except Fail:
        raise
    except Exception as e:
        raise Fail(f"--resume {path} is not a checkpoint of this network ({type(e).__name__}): "
                   "pass a checkpoint.pt written by this train.py, or start without --resume")


def check_same_recipe(saved, saved_seed, recipe, seed, path):
    """A resumed run continues the checkpoint's run exactly, so its recipe and seed must be the checkpoint's: a knob
    that differs (or a default changed since) is refused, naming the flags that continue it."""
    ours = {**dataclasses.asdict(recipe), "seed": seed}
    missing = [k for k in ours if k not in {**saved, "seed": saved_seed}]
    if missing:
        raise Fail(f"--resume {path} was written by an older train.py that did not record --{missing[0].replace('_', '-')}: "
                   "it cannot be continued exactly; start a new run without --resume")
    theirs, ours = differing_flags({**saved, "seed": saved_seed}, ours)
    if theirs:
        raise Fail(f"--resume {path} was trained with {theirs}, this run has {ours}: pass the checkpoint's flags to "
                   "continue it exactly, or start a new run without --resume")


def differing_flags(saved, ours):
    """(theirs, ours): the knobs where two recipes (as dicts) differ, written as flags."""
    def flag(name, value):
        dashed = name.replace("_", "-")
        return f"--{'' if value else 'no-'}{dashed}" if isinstance(value, bool) else f"--{dashed} {value}"

    differ = [k for k in ours if saved.get(k) != ours[k]]
    return " ".join(flag(k, saved.get(k)) for k in differ), " ".join(flag(k, ours[k]) for k in differ)


def rng_states():
    """The global random-number generators' states (CPU, and every GPU where there is CUDA)."""
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_states(states):
    torch.set_rng_state(states["cpu"].cpu())
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])
