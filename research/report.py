"""The results page, generated from results/*.json alone.

    python -m research.report            # writes RESULTS.md and docs/default_runs.png
    python -m research.report --check    # exit 1 with one line if either (or README.md's headline) is stale
"""
import argparse
import filecmp
import math
import re
import sys
import tempfile
from pathlib import Path

from research.records import TARGET, Invalid, at_target, finals, load_all, mean, std, summary

ROOT = Path(__file__).resolve().parents[1]
PAGE, PICTURE = "RESULTS.md", "docs/default_runs.png"
HEADLINE_MARK = "<!-- headline -->"

# Recipes, newest first: what each is and the change that made it (from train.py's history).
RECIPES = {
    "default": ("the default: an EMA of the weights (decay 0.999 a step) from the first lr decay on (epochs 6-14), "
                "tested in each of those epochs with BatchNorm statistics re-estimated; batch 64, rotation 7 deg, "
                "shift 1 px, scale 0.1, weight decay 1e-3, SGD lr 0.05 momentum 0.9, StepLR 6 / 0.2, 15 epochs"),
    "snapshot-average": "as the default, but testing the equal-weight average of the weights after each of the last 3 epochs",
    "batch-128": "as snapshot-average, but batch 128, rotation only (no shift, no scale)",
    "batch-128-no-weight-decay": "as batch-128, without weight decay",
    "original": "batch 128, SGD lr 0.01 momentum 0.9, StepLR 10 / 0.1, rotation 7 deg, no weight decay, no averaging",
}
# One row per change of the default: the commit that made it, what changed, and how its effect was measured
# ("paired": the same seeds on the same machine before and after; "unpaired": other seeds; "readout": a paired
# study of two readouts of one training run, pooled over the listed study records).
HISTORY = [
    ("original", "ecc12f5", "the first recipe", None),
    ("batch-128-no-weight-decay", "bf4899e", "lr 0.05 with StepLR 6 / 0.2 (was 0.01, 10 / 0.1); test the average of the "
     "last 3 epochs' weights", None),
    ("batch-128", "fefff3d", "weight decay 1e-3 (was 0)",
     ("paired", "batch-128/cpu-bf16-2026-11-22-seeds11-20.json", "batch-128-no-weight-decay/cpu-bf16-2026-11-22-seeds11-20.json")),
    ("snapshot-average", "3d24cf0", "batch 64 (was 128), shift 1 px, scale 0.1 (from a recipe search on held-out images)",
     ("unpaired", "snapshot-average/cuda-bf16-h100-2026-11-23-random20.json", "batch-128/cuda-bf16-h100-2026-11-23-random20.json")),
    ("default", "2744964", "an EMA of the weights (0.999 a step, from epoch 6) instead of the 3-epoch average "
     "(adopted by a rule written before a paired study on held-out images)",
     ("readout", "ema_0.999_from6", "ema_0.999", ["studies/ema-last-phase/ema_last_phase.json", "studies/readouts/readouts.json"])),
]


def pct(x, digits=2):
    return f"{x:.{digits}f}"


def one_in(p):
    return "0" if p <= 0 else f"about 1 in {round(1 / p, -1 if 1 / p >= 30 else 0):.0f}"


def short_command(cmd):
    """A command without its long seed lists (they are in the file), for a table."""
    if cmd is None:
        return "not recorded"
    cmd = re.sub(r"(\S+\.py) ((?:\d+,){4,}\d+)", lambda m: f"{m.group(1)} <{m.group(2).count(',') + 1} seeds>", cmd)
    return re.sub(r"--seeds ((?:\d+,){4,}\d+)", lambda m: f"--seeds <{m.group(1).count(',') + 1} seeds>", cmd)


def machine(r):
    name = r["device_name"] or "CPU (model not recorded)" if r["device"] == "cpu" else r["device_name"] or r["device"]
    cap = f" ({r['torch_capability']})" if r.get("torch_capability") else ""
    return name + cap


def label(r):
    short = {"Intel(R) Xeon(R) Processor": "Intel Xeon", "AMD EPYC": "AMD EPYC", "NVIDIA H100 80GB HBM3": "H100"}
    return f"{short.get(r['device_name'], r['device_name'] or r['device'])} {r['precision']}"


def test_records(records, recipe):
    """The recipe's runs on the test set; a study's record (readouts of runs) repeats runs that a record of their
    own holds, and is not counted again."""
    return {k: r for k, r in records.items() if r["schema"] == "runs/1" and r["recipe_name"] == recipe
            and r["evaluated_on"] == "test" and not r.get("readouts_what")}


def default_finals(records):
    return [a for r in test_records(records, "default").values() for a in finals(r)]


def headline(records=None):
    """The one-line headline of the default recipe (the README quotes it verbatim)."""
    records = load_all(ROOT / "results") if records is None else records
    recs = test_records(records, "default").values()
    s = summary([a for r in recs for a in finals(r)])
    kinds = sorted({label(r) for r in recs})
    below = s["runs"] - s["at_target"]
    return (f"{pct(s['mean'])} % mean test accuracy +- {pct(s['std'])} (std) over {s['runs']} runs of the default "
            f"recipe, lowest {pct(s['min'])} %: {below} of {s['runs']} below {TARGET:.2f} % (a normal fit to the "
            f"runs puts a miss at {one_in(s['miss_rate'])}); {', '.join(kinds)}")


# ---- the measured effect of each change --------------------------------------------------------------------

def effect(records, how):
    files = how[3] if how and how[0] == "readout" else how[1:] if how else []
    if how is None or not all(f in records for f in files):
        return "no committed runs", ""
    kind = how[0]
    if kind == "paired":
        new, old = records[how[1]], records[how[2]]
        a = {r["seed"]: r["test_acc"][-1] for r in new["runs"]}
        b = {r["seed"]: r["test_acc"][-1] for r in old["runs"]}
        d = [a[s] - b[s] for s in a if s in b]
        text = (f"{pct(mean(d), 3)} +- {pct(std(d) / math.sqrt(len(d)), 3)} (paired, {len(d)} seeds, test; "
                f"{finals_at(new)} against {finals_at(old)} >= {TARGET:.2f} %)")
        return text, f"[after]({link(how[1])}), [before]({link(how[2])})"
    if kind == "unpaired":
        a, b = finals(records[how[1]]), finals(records[how[2]])
        se = math.sqrt(std(a) ** 2 / len(a) + std(b) ** 2 / len(b))
        text = (f"{pct(mean(a) - mean(b), 3)} +- {pct(se, 3)} (other seeds, {len(a)} and {len(b)} runs, test; "
                f"lowest {pct(min(a))} against {pct(min(b))})")
        return text, f"[after]({link(how[1])}), [before]({link(how[2])})"
    new_name, alt_name, files = how[1], how[2], how[3]
    d = []
    for f in files:
        name = new_name if any(new_name in run.get("readouts", {}) for run in records[f]["runs"]) else alt_name
        d += [run["readouts"][name][-1] - run["test_acc"][-1] for run in records[f]["runs"]]
    text = (f"{pct(mean(d), 4)} +- {pct(std(d) / math.sqrt(len(d)), 4)} (paired readouts of one run, {len(d)} seeds, "
            f"held-out images)")
    return text, ", ".join(f"[{Path(f).parent.name}]({link(f)})" for f in files)


def finals_at(record):
    xs = finals(record)
    return f"{at_target(xs)}/{len(xs)}"


def link(rel):
    return f"results/{rel}"


# ---- the page ----------------------------------------------------------------------------------------------

def page(records):
    out = ["<!-- generated by `python -m research.report` from results/*.json: do not edit -->", "",
           "# Results", "",
           "Every number on this page is computed from the records in [`results/`](results) "
           "(one JSON schema: [`research/records.py`](research/records.py)); a test regenerates the page and fails "
           "when it is stale. Accuracies are in %, on the 10,000 MNIST test images unless a table says "
           "\"held-out\" (10,000 training images kept out of training). \"Miss rate\" estimates the chance that "
           f"one more run ends below {TARGET:.2f} %: the tail of the normal distribution with the runs' mean and "
           f"spread below {TARGET - 0.005:.3f} % (accuracies come in steps of 0.01 %, so below {TARGET:.2f} means "
           f"{TARGET - 0.01:.2f} or less: the curve is cut midway).", "",
           "## The default recipe", "",
           f"**{headline(records)}.**", "",
           RECIPES["default"][0].upper() + RECIPES["default"][1:] + ".", "",
           f"![every run of the default: final test accuracy against the {TARGET:.2f} % line]({PICTURE})", ""]
    out += recipe_tables(records)
    out += history(records)
    out += studies(records)
    out += speed(records)
    return "\n".join(out).rstrip() + "\n"


def recipe_tables(records):
    out = ["## Runs per recipe", "",
           "One row per record: one set of runs of one recipe on one machine. \"Same seeds\" rows repeat seeds "
           "of another row on other hardware.", ""]
    for recipe in ("default", "snapshot-average", "batch-128", "batch-128-no-weight-decay"):
        recs = test_records(records, recipe)
        if not recs:
            continue
        out += [f"### {recipe}", "", RECIPES[recipe][0].upper() + RECIPES[recipe][1:] + ".", "",
                "| data | runs | mean | std | lowest | >= 99.40 | machine | precision | torch | command |",
                "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |"]
        for rel, r in recs.items():
            s = summary(finals(r))
            out.append(f"| [{Path(rel).stem}]({link(rel)}) | {s['runs']} | {pct(s['mean'], 3)} | {pct(s['std'], 3)} | "
                       f"{pct(s['min'])} | {s['at_target']} | {machine(r)} | {r['precision']} | {r['torch'] or '?'} | "
                       f"`{short_command(r['command'])}` |")
        xs = [a for r in recs.values() for a in finals(r)]
        s = summary(xs)
        out += [f"| **all** | **{s['runs']}** | **{pct(s['mean'], 3)}** | {pct(s['std'], 3)} | **{pct(s['min'])}** | "
                f"**{s['at_target']}** | miss rate {one_in(s['miss_rate'])} | | | |", ""]
    return out


def history(records):
    out = ["## History of the recipe", "",
           "One row per change of the default, oldest first; the effect on the final accuracy is measured "
           "only from committed records (+- one standard error).", "",
           "| recipe | commit | change | measured effect | data |", "| --- | --- | --- | --- | --- |"]
    for name, commit, change, how in HISTORY:
        text, links = effect(records, how)
        out.append(f"| {name} | `{commit}` | {change} | {text} | {links} |")
    return out + [""]


def studies(records):
    out = ["## Studies on held-out images", "",
           "Paired designs: each seed trains once, and the variants are readouts of that run (other weight "
           "averages) or branches finishing one trunk differently, so their differences carry no seed noise. "
           "Scored on 10,000 held-out training images, never on the test set (but for the confirmation, once a "
           "study has chosen, on seeds drawn for it: its title says so). Differences: mean over seeds of "
           "the final epoch's difference to the recipe's own readout, +- one standard error.", ""]
    plain = [(rel, r) for rel, r in records.items() if r["schema"] == "runs/1"
             and r["evaluated_on"] == "validation" and not r.get("readouts_what")]
    if plain:
        out += ["**Whole runs on held-out images** (no readouts):", "",
                "| data | runs | mean | std | lowest | machine | precision | command |",
                "| --- | ---: | ---: | ---: | ---: | --- | --- | --- |"]
        for rel, r in plain:
            s = summary(finals(r))
            out.append(f"| [{Path(rel).stem}]({link(rel)}) ({r['recipe_name']}) | {s['runs']} | {pct(s['mean'], 3)} | "
                       f"{pct(s['std'], 3)} | {pct(s['min'])} | {machine(r)} | {r['precision']} | "
                       f"`{short_command(r['command'])}` |")
        out.append("")
    for rel, r in records.items():
        if r["schema"] != "runs/1" or not r.get("readouts_what"):  # held-out images, or a test-set confirmation
            continue
        base = finals(r)
        out += [f"**{r['title'][0].upper() + r['title'][1:]}** ([data]({link(rel)}); {r['recipe_name']} recipe, "
                f"{machine(r)}, {r['precision']}; `{short_command(r['command'])}`)", "",
                "| readout | runs | mean | lowest | difference to the recipe's own |", "| --- | ---: | ---: | ---: | ---: |",
                f"| the recipe's own | {len(base)} | {pct(mean(base), 3)} | {pct(min(base))} | |"]
        for name, what in r.get("readouts_what", {}).items():
            xs = [run["readouts"][name][-1] for run in r["runs"]]
            d = [x - b for x, b in zip(xs, base)]
            out.append(f"| {what} | {len(xs)} | {pct(mean(xs), 3)} | {pct(min(xs))} | "
                       f"{pct(mean(d), 3)} +- {pct(std(d) / math.sqrt(len(d)), 3)} |")
        out.append("")
        if r.get("conclusion"):
            out += [f"Conclusion, by the rule written before the runs: {r['conclusion']}", ""]
    out += ["**Recipe searches** (Optuna, trials scored as mean - 2 std of their networks' final held-out accuracy):", ""]
    for rel, r in records.items():
        if r["schema"] == "study/1":
            reports = ", ".join(f"[{f}]({link(str(Path(rel).parent / f))})" for f in r["files"])
            out.append(f"- {r['title']} ({r['device_name']}, {r['precision']}): {reports}")
    return out + [""]


def speed(records):
    out = ["## Speed", "",
           "`python -m research.benchmark`: the classic PyTorch-example pipeline (DataLoader, fp32, batch 128) against this "
           "trainer's (data on the device, the precision the hardware computes natively, batch 64), same network, "
           "on 2-core CPUs. Seconds per epoch: the median of the measured epochs (train and test); a job: 15 "
           "epochs with start-up.", "",
           "| machine, date measured | ours: precision, recipe | epochs timed | classic s/epoch | ours s/epoch | classic job s | "
           "ours job s | speed-up (job) | speed-up (epoch) | data |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    rows = [(rel, r) for rel, r in records.items() if r["schema"] == "benchmark/1" and "pipelines" in r]
    for rel, r in sorted(rows, key=lambda x: (x[1]["device_name"], "AVX2" in x[1]["note"], x[1]["date"] or "", x[0])):
        c, o = r["pipelines"]["classic"], r["pipelines"]["ours"]
        cap = r["torch_capability"] + (", oneDNN capped to AVX2" if "capped to AVX2" in r["note"] else "")
        out.append(f"| {r['device_name']} ({cap}), {r['date']} | {o['precision']}, {r.get('recipe_name', '?')} | "
                   f"{r['epochs']} | {pct(c['median_epoch_seconds'])} | {pct(o['median_epoch_seconds'])} | "
                   f"{c['job_seconds']:.0f} | {o['job_seconds']:.0f} | **{r['speedup_job']:.2f}x** | "
                   f"{r['speedup_epoch']:.2f}x | [{Path(rel).stem}]({link(rel)}) |")
    out += ["", "With 3 epochs timed, a job's other 12 epochs are estimated from the timed ones "
            "(the record's log says how).", ""]
    return out + throughput(records)


def throughput(records):
    """research/throughput.py's records: runs an hour of one process with every thread against one per core."""
    rows = [(rel, r) for rel, r in records.items() if r["schema"] == "benchmark/1" and "setups" in r]
    if not rows:
        return []
    out = ["### Runs an hour: one process, or one single-thread process per core", "",
           "`python -m research.throughput`: the same `train.py --seeds` batch of whole runs, started once with every "
           "thread, then once per core with `OMP_NUM_THREADS=1` (the processes share the batch); wall clock from "
           "start-up to the last process's end.", "",
           "| machine, date measured | precision | runs | processes x threads | seconds | runs an hour | gain | data |",
           "| --- | --- | ---: | --- | ---: | ---: | ---: | --- |"]
    for rel, r in rows:
        for name, s in r["setups"].items():
            gain = f"**{r['speedup_runs_per_hour']:.2f}x**" if name == list(r["setups"])[-1] else ""
            out.append(f"| {r['device_name']} ({r['torch_capability']}), {r['date']} | {s['precision']} | "
                       f"{s['runs']} x {r['epochs']} epochs | {s['processes']} x {s['threads']} thread(s) | "
                       f"{s['seconds']:.0f} | {s['runs_per_hour']:.1f} | {gain} | [{Path(rel).stem}]({link(rel)}) |")
    return out + [""]


# ---- the picture -------------------------------------------------------------------------------------------

def picture(records, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {}
    for r in test_records(records, "default").values():
        groups.setdefault(label(r), []).extend(finals(r))
    names = sorted(groups)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink"]
    with plt.rc_context({"font.size": 9, "svg.hashsalt": "0", "path.simplify": False}):
        fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100)
        for i, name in enumerate(names):
            xs = sorted(groups[name])
            n = len(xs)
            pos = [i + (0.0 if n == 1 else 0.7 * (k / (n - 1) - 0.5)) for k in range(n)]
            miss = sum(round(x, 2) < TARGET for x in xs)
            ax.scatter(pos, xs, s=22, color=colours[i % len(colours)], edgecolor="black", linewidth=0.4, zorder=3,
                       label=f"{name}: {n} runs, mean {mean(xs):.3f}, {miss} below {TARGET:.2f}")
        ax.axhline(TARGET, color="red", linewidth=1.2, linestyle="--", zorder=2)
        ax.text(len(names) - 0.55, TARGET, f"{TARGET:.2f} %", color="red", va="bottom", ha="right")
        ax.set_xticks(range(len(names)), names)
        ax.set_xlim(-0.6, len(names) - 0.4)
        lo = min(min(v) for v in groups.values())
        hi = max(max(v) for v in groups.values())
        ax.set_ylim(min(lo, TARGET) - 0.04, hi + 0.06)
        ax.set_ylabel("final test accuracy (%)")
        ax.set_title(f"The default recipe: every run's final test accuracy ({sum(map(len, groups.values()))} runs; "
                     "within a machine, sorted)")
        ax.grid(axis="y", linewidth=0.4, alpha=0.6, zorder=0)
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", metadata={"Software": None})
        plt.close(fig)


def write(root_out, results=ROOT / "results"):
    records = load_all(results)
    root_out = Path(root_out)
    (root_out / PAGE).write_text(page(records))
    picture(records, root_out / PICTURE)
    return records


def stale(root=ROOT):
    """None when RESULTS.md, its picture and README.md's headline line match the data; else one line saying what."""
    root = Path(root)
    with tempfile.TemporaryDirectory() as tmp:
        records = write(tmp, root / "results")
        for rel in (PAGE, PICTURE):
            if not (root / rel).is_file() or not filecmp.cmp(Path(tmp) / rel, root / rel, shallow=False):
                return f"{rel} is stale: regenerate it with `python -m research.report`"
    readme = root / "README.md"
    if readme.is_file():
        marked = [line for line in readme.read_text().splitlines() if HEADLINE_MARK in line]
        if not marked:
            return f"README.md has no headline line (marked {HEADLINE_MARK}): put back `python -m research.report`'s headline"
        if not all(headline(records) in line for line in marked):
            return f"README.md's headline line ({HEADLINE_MARK}) differs from `python -m research.report`'s: {headline(records)}"
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if the committed page or picture is stale")
    args = p.parse_args(argv)
    try:
        if args.check:
            problem = stale()
            if problem:
                print(problem, file=sys.stderr)
                return 1
            return 0
        write(ROOT)
        print(f"wrote {PAGE} and {PICTURE}")
        return 0
    except Invalid as e:
        print(e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
