"""The evidence's schema: every file in results/ is one JSON record of one of three kinds, loaded and
checked here, plus the small summaries (mean, spread, lowest, runs at target, miss rate) that RESULTS.md
and the README quote.

runs/1: one set of runs of one recipe on one machine (train.py --seeds writes it as seeds.json).
    schema          "runs/1"
    title           one line: what this set of runs is
    recipe_name     one short stable name per recipe ("default": today's; earlier ones say what they were)
    recipe          the recipe as values: every field of train.Recipe, as these runs trained it
    evaluated_on    "test" or "validation" (held-out training images, recipe["validation"] of them)
    date            "YYYY-MM-DD" or null
    commit          short hash of the code that ran, or null
    device          "cpu", "cuda" or "mps"
    device_name     CPU model as lscpu names it, or the GPU's name; or null
    torch_capability torch.backends.cpu.get_cpu_capability() for CPU runs, else null
    precision       "bf16" or "fp32"
    precision_why   why that precision (train.py's words), or null
    torch           torch.__version__, or null
    threads         torch threads, or null when not recorded
    seeds_drawn     how the seeds were chosen
    command         the command line that made it, or null
    note            free text, may be empty
    runs            list of {"seed": int, "copy": int | null, "test_acc": [float per epoch],
                             "test_loss": [float per epoch] | null, "seconds": float | null}
  Optional record keys:
    test_acc_epochs   0-based epochs that each run's test_acc (and readouts) cover, when not all of them
                      (e.g. [14]: only the final accuracy was recorded; [12, 13, 14]: a readout study)
    readouts_what     {name: what it is} for the runs' "readouts"
    seeds_not_run     seeds drawn for this set that never ran (stopped early)
    summary_as_published  the summary numbers the original file carried, verbatim (the page recomputes
                      its own from the runs; kept so that nothing once published is lost)
    log               a run's raw console output, verbatim
    files             other files in this record's folder that belong to it (e.g. a pre-registered rule)
    conclusion        what a study concluded, by the rule written before its runs (RESULTS.md shows it)
    converted_from    where the numbers came from when the record was converted from an older file
  Optional run keys:
    epochs_at_target  epochs >= TARGET, kept where test_acc does not cover every epoch
    epoch_seconds     seconds of each epoch
    readouts          {name: [accuracy per epoch of test_acc_epochs]}: other readouts of the same seed, one
                      training run (other weight averages of it, or branches finishing one trunk differently);
                      test_acc is the recipe's own readout
    trunk_acc         a branch study's trunk accuracy just before the branches

benchmark/1: one run of research/benchmark.py (the classic PyTorch-example pipeline against ours), or of
research/throughput.py (runs an hour of one process against one single-thread process per core).
    schema, date, commit, device, device_name, torch_capability, torch, threads, command, note  (as above)
    epochs          epochs each pipeline ran (each run, for throughput)
    log             the benchmark's raw output, verbatim
  research/benchmark.py's:
    pipelines       {"classic": P, "ours": P}, P = {"precision": str, "precision_why": str | null,
                     "batch_size": int, "epoch_seconds": [float per measured epoch],
                     "median_epoch_seconds": float, "job_seconds": float (a 15-epoch job, start-up
                     included), "test_acc": [float per epoch] | null}
    speedup_job     classic job_seconds / ours job_seconds, as printed
    speedup_epoch   classic median epoch / ours median epoch, as printed
  research/throughput.py's:
    setups          {name: S}, S = {"processes": int, "threads": int (each process's), "recipe_name": str,
                     "precision": str (what --precision auto chose),
                     "runs": int, "seconds": float (wall clock, start-up to the last process's end),
                     "runs_per_hour": float, "final_test_acc": [float per run], "run_seconds": [float per run]}
    speedup_runs_per_hour  the last setup's runs an hour / the first's, as printed
  Optional: recipe_name (the recipe "ours" trained, or the runs'), converted_from.

study/1: a study's reports (a recipe search's tables, plot and log) kept beside the data.
    schema, title, date, commit, device, device_name, precision, torch, command, note (as above)
    files           the report files in the record's folder (.md, .png, .log, .txt), each listed once
  Optional: recipe_name (the recipe the study started from), converted_from.

Every file under results/ is a .json record of one of these kinds, or a file listed in the "files" of a
record in the same folder (allowed kinds: REPORT_SUFFIXES).
"""
import dataclasses
import json
import math
import re
from pathlib import Path

from train import TARGET, Recipe

REPORT_SUFFIXES = (".md", ".png", ".log", ".txt")

KNOBS = [f.name for f in dataclasses.fields(Recipe)]  # train.py's recipe: what a record's "recipe" holds

OPT, NULL = "optional", type(None)
NUM = (int, float)
COMMON = {"schema": str, "date": (str, NULL), "commit": (str, NULL), "device": str,
          "device_name": (str, NULL), "torch": (str, NULL), "command": (str, NULL), "note": str}
KINDS = {
    "runs/1": dict(COMMON, title=str, recipe_name=str, recipe=dict, evaluated_on=str,
                   torch_capability=(str, NULL), precision=str, precision_why=(str, NULL),
                   threads=(int, NULL), seeds_drawn=str, runs=list),
    "benchmark/1": dict(COMMON, torch_capability=(str, NULL), threads=(int, NULL), epochs=int, log=str),
    "study/1": dict(COMMON, title=str, precision=str, files=list),
}
OPTIONAL = {
    "runs/1": {"test_acc_epochs": list, "readouts_what": dict, "seeds_not_run": list,
               "summary_as_published": dict, "log": str, "files": list, "converted_from": str, "conclusion": str},
    "benchmark/1": {"recipe_name": str, "converted_from": str, "pipelines": dict, "speedup_job": NUM,
                    "speedup_epoch": NUM, "setups": dict, "speedup_runs_per_hour": NUM},
    "study/1": {"recipe_name": str, "converted_from": str},
}
RUN = {"seed": int, "copy": (int, NULL), "test_acc": list, "test_loss": (list, NULL), "seconds": (NUM, NULL)}
RUN_OPTIONAL = {"epochs_at_target": int, "epoch_seconds": list, "readouts": dict, "trunk_acc": NUM}
PIPELINE = {"precision": str, "precision_why": (str, NULL), "batch_size": int, "epoch_seconds": list,
            "median_epoch_seconds": NUM, "job_seconds": NUM, "test_acc": (list, NULL)}
SETUP = {"processes": int, "threads": int, "recipe_name": str, "precision": str, "runs": int, "seconds": NUM, "runs_per_hour": NUM,
         "final_test_acc": list, "run_seconds": list}
BENCHMARK_KINDS = {"pipelines": ("speedup_job", "speedup_epoch"), "setups": ("speedup_runs_per_hour",)}
DATE = re.compile(r"\d{4}-\d\d-\d\d$")


class Invalid(ValueError):
    """A record that does not follow the schema; its message is one line naming the file and field."""


def _type_ok(value, kind):
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        return False                       # True is an int to Python, not to this schema
    return isinstance(value, kind)


def _fields(where, obj, required, optional):
    if not isinstance(obj, dict):
        raise Invalid(f"{where}: expected an object")
    for key, kind in required.items():
        if key not in obj:
            raise Invalid(f"{where}: missing required field '{key}'")
        if not _type_ok(obj[key], kind):
            raise Invalid(f"{where}: field '{key}' has the wrong type ({type(obj[key]).__name__})")
    for key, value in obj.items():
        if key in required:
            continue
        if key not in optional:
            raise Invalid(f"{where}: unknown field '{key}'")
        if not _type_ok(value, optional[key]):
            raise Invalid(f"{where}: field '{key}' has the wrong type ({type(value).__name__})")


def _floats(where, key, values):
    if not all(_type_ok(v, NUM) and math.isfinite(v) for v in values):
        raise Invalid(f"{where}: field '{key}' must be a list of numbers")


def validate(record, name="record"):
    """Check one record (a parsed JSON object); raise Invalid with one line naming `name` and the field."""
    if not isinstance(record, dict) or "schema" not in record:
        raise Invalid(f"{name}: missing required field 'schema'")
    kind = record["schema"]
    if kind not in KINDS:
        raise Invalid(f"{name}: field 'schema' is {kind!r}, not one of {', '.join(KINDS)}")
    _fields(name, record, KINDS[kind], OPTIONAL[kind])
    if record["device"] not in ("cpu", "cuda", "mps"):
        raise Invalid(f"{name}: field 'device' is {record['device']!r}, not cpu, cuda or mps")
    if record["date"] is not None and not DATE.match(record["date"]):
        raise Invalid(f"{name}: field 'date' is {record['date']!r}, not YYYY-MM-DD")
    if kind in ("runs/1", "study/1") and record["precision"] not in ("bf16", "fp32"):
        raise Invalid(f"{name}: field 'precision' is {record['precision']!r}, not bf16 or fp32")
    if kind == "runs/1":
        _validate_runs(record, name)
    elif kind == "benchmark/1":
        _validate_benchmark(record, name)
    elif not all(isinstance(f, str) and Path(f).suffix in REPORT_SUFFIXES for f in record["files"]):
        raise Invalid(f"{name}: field 'files' must list report files ({', '.join(REPORT_SUFFIXES)})")
    return record


def _validate_benchmark(record, name):
    """Either research/benchmark.py's pipelines or research/throughput.py's setups, with their speed-ups."""
    which = [key for key in BENCHMARK_KINDS if key in record]
    if len(which) != 1:
        raise Invalid(f"{name}: a benchmark/1 record has 'pipelines' or 'setups' (one of them)")
    for key in [k for kind, keys in BENCHMARK_KINDS.items() for k in keys if kind != which[0]]:
        if key in record:
            raise Invalid(f"{name}: field '{key}' does not go with '{which[0]}'")
    for key in BENCHMARK_KINDS[which[0]]:
        if key not in record:
            raise Invalid(f"{name}: missing required field '{key}'")
    if which == ["setups"]:
        for setup, values in record["setups"].items():
            _fields(f"{name}: setups.{setup}", values, SETUP, {})
        return
    for pipe in ("classic", "ours"):
        where = f"{name}: pipelines.{pipe}"
        if pipe not in record["pipelines"]:
            raise Invalid(f"{name}: field 'pipelines' lacks '{pipe}'")
        _fields(where, record["pipelines"][pipe], PIPELINE, {})
        _floats(where, "epoch_seconds", record["pipelines"][pipe]["epoch_seconds"])


def _validate_runs(record, name):
    recipe = record["recipe"]
    for knob in KNOBS:
        if knob not in recipe:
            raise Invalid(f"{name}: field 'recipe' lacks the knob '{knob}'")
    for knob in recipe:
        if knob not in KNOBS:
            raise Invalid(f"{name}: field 'recipe' has an unknown knob '{knob}'")
    if recipe["precision"] != record["precision"]:
        raise Invalid(f"{name}: field 'recipe' says precision {recipe['precision']!r}, the record {record['precision']!r}")
    if record["evaluated_on"] not in ("test", "validation"):
        raise Invalid(f"{name}: field 'evaluated_on' is {record['evaluated_on']!r}, not test or validation")
    if (record["evaluated_on"] == "validation") != (recipe["validation"] > 0):
        raise Invalid(f"{name}: field 'evaluated_on' disagrees with recipe.validation ({recipe['validation']})")
    if not record["runs"]:
        raise Invalid(f"{name}: field 'runs' is empty")
    epochs = record.get("test_acc_epochs", list(range(recipe["epochs"])))
    for i, run in enumerate(record["runs"]):
        where = f"{name}: runs[{i}]"
        _fields(where, run, RUN, RUN_OPTIONAL)
        _floats(where, "test_acc", run["test_acc"])
        if len(run["test_acc"]) != len(epochs):
            raise Invalid(f"{where}: field 'test_acc' has {len(run['test_acc'])} epochs, expected {len(epochs)}")
        if run["test_loss"] is not None and len(run["test_loss"]) != len(run["test_acc"]):
            raise Invalid(f"{where}: field 'test_loss' has {len(run['test_loss'])} epochs, test_acc {len(run['test_acc'])}")
        for key, values in run.get("readouts", {}).items():
            if not isinstance(values, list) or len(values) != len(epochs):
                raise Invalid(f"{where}: field 'readouts.{key}' must list {len(epochs)} accuracies")
            _floats(where, f"readouts.{key}", values)


def load(path):
    """Read and check one record; a file that is not JSON or not a record is one line naming it."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Invalid(f"{path}: not a readable JSON file ({e})") from None
    return validate(record, str(path))


def load_all(folder="results"):
    """Every record under `folder`: {relative path: record}, sorted by path. Checks that every other file
    is a report listed in the 'files' of a record in its own folder, and each listed file exists."""
    folder = Path(folder)
    records = {p.relative_to(folder).as_posix(): load(p) for p in sorted(folder.rglob("*.json"))}
    listed = set()
    for rel, record in records.items():
        for f in record.get("files", []):
            target = (folder / rel).parent / f
            if not target.is_file():
                raise Invalid(f"{folder / rel}: field 'files' names {f}, which is not there")
            listed.add(target.relative_to(folder).as_posix())
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and p.suffix != ".json" and rel not in listed:
            raise Invalid(f"{p}: not a JSON record, nor a report listed in a record's 'files' "
                          f"(results/ holds data only)")
    return records


# ---- summaries ------------------------------------------------------------------------------------------

def finals(record):
    """Each run's final accuracy (the last of test_acc)."""
    return [run["test_acc"][-1] for run in record["runs"]]


def mean(xs):
    return sum(xs) / len(xs)


def std(xs):
    """Sample standard deviation (n - 1); 0.0 for one value."""
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def at_target(xs, target=TARGET):
    """How many of xs are >= target (accuracies are recorded to 0.01 %, compared with that rounding)."""
    return sum(round(x, 2) >= target for x in xs)


def miss_rate(xs, target=TARGET):
    """Estimated chance that one more run ends below target: the tail of the normal distribution with the runs'
    mean and spread, below target - 0.005. Accuracies come in steps of 0.01 % (10,000 test images), so "below
    99.40" means "99.39 or less": the continuous curve is cut midway between the two (a continuity correction)."""
    s = std(xs)
    if s == 0:
        return 0.0 if mean(xs) >= target else 1.0
    z = (target - 0.005 - mean(xs)) / s
    return 0.5 * math.erfc(-z / math.sqrt(2))


def summary(xs, target=TARGET):
    """The numbers a results table shows, from a list of final accuracies."""
    return {"runs": len(xs), "mean": mean(xs), "std": std(xs), "min": min(xs), "max": max(xs),
            "at_target": at_target(xs, target), "miss_rate": miss_rate(xs, target)}
