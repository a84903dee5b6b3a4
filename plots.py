"""The figures: a run's curves (curves.png), several seeds' accuracies (seeds.png), a trained network's mistakes
(misclassified.png, confusion.png: evaluate.py), and the helpers research/sweep.py draws its plots with. Each file
is written whole or not at all (rundir.write_atomic)."""
import numpy as np

from rundir import write_atomic


def plot_curves(metrics, path, target):
    """One run's loss and accuracy per epoch, train and test."""
    plt = pyplot()
    epochs = [e["epoch"] for e in metrics["epochs"]]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for split in ("train", "test"):
        ax_loss.plot(epochs, [e[f"{split}_loss"] for e in metrics["epochs"]], marker="o", label=split)
        ax_acc.plot(epochs, [e[f"{split}_acc"] for e in metrics["epochs"]], marker="o", label=split)
    ax_acc.set_ylim(97, 100)
    ax_loss.set_xlabel("epoch"), ax_loss.set_ylabel("loss"), ax_loss.grid(alpha=0.3), ax_loss.legend()
    finish_accuracy_axes(ax_acc, target)
    save_figure(fig, f"seed {metrics['seed']}: final test accuracy {metrics['final_test_acc']:.2f} %", path,
                margins=dict(left=0.06, right=0.98, bottom=0.12, top=0.88, wspace=0.2))


def plot_seeds(record, path, target):
    """Each run's test accuracy per epoch (a seeds.json record), with the target line: the spread at a glance."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in record["runs"]:
        name = f"seed {r['seed']}" + (f".{r['copy']}" if r["copy"] is not None else "")
        ax.plot(range(len(r["test_acc"])), r["test_acc"], marker=".", linewidth=1, label=name)
    ax.set_ylim(98.8, 99.8)
    finish_accuracy_axes(ax, target, legend_columns=2 if len(record["runs"]) > 10 else 1)
    finals = [r["test_acc"][-1] for r in record["runs"]]
    save_figure(fig, f"{len(finals)} runs: final mean {sum(finals) / len(finals):.3f} %, min {min(finals):.2f} %", path,
                margins=dict(left=0.09, right=0.97, bottom=0.1, top=0.92))


def plot_misclassified(examples, path, columns=10, at_most=200):
    """The misclassified digits, (image 28 x 28, true, predicted, probability of the prediction) each, in a grid: all
    of a trained network's ~50, the first `at_most` of a poorly trained one's thousands. One image with the titles
    written in: a grid of 200 axes takes seconds to draw."""
    plt = pyplot()
    shown = examples[:at_most]
    rows = max(1, -(-len(shown) // columns))
    width, height = 32, 40  # pixels a digit takes with its margins and its title above
    grid = np.full((rows * height, columns * width), np.nan)  # NaN: drawn as the blank page
    fig, ax = plt.subplots(figsize=(columns * 1.1, rows * 1.375 + 0.5))
    for i, (image, true, predicted, p) in enumerate(shown):
        top, left = i // columns * height, i % columns * width
        grid[top + 10: top + 38, left + 2: left + 30] = image
        ax.text(left + width / 2, top + 8, f"{true} -> {predicted} ({p:.2f})", ha="center", fontsize=8)
    ax.imshow(grid, cmap="gray_r")
    ax.axis("off")
    which = f"{len(examples)}" if len(shown) == len(examples) else f"the first {len(shown)} of {len(examples)}"
    save_figure(fig, f"{which} misclassified test digits: true -> predicted (its probability)", path,
                margins=dict(left=0.01, right=0.99, bottom=0.01, top=1 - 0.5 / (rows * 1.375 + 0.5)))


def plot_confusion(confusion, path):
    """The 10 x 10 confusion matrix, counts written in; the colour shows the mistakes (the diagonal would drown them)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    mistakes = confusion.copy()
    mistakes[range(10), range(10)] = 0
    image = ax.imshow(mistakes, cmap="Reds")
    for t in range(10):
        for p in range(10):
            n = int(confusion[t, p])
            if n:
                ax.text(p, t, str(n), ha="center", va="center", fontsize=7, color="black" if t != p else "tab:green")
    ax.set_xticks(range(10)), ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit"), ax.set_ylabel("true digit")
    fig.colorbar(image, ax=ax, label="test digits (off the diagonal)")
    save_figure(fig, f"confusion matrix: {int(confusion.trace())} of {int(confusion.sum())} right", path)


def pyplot():
    """matplotlib, imported only when a figure is drawn, drawing without a display."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def finish_accuracy_axes(ax, target, legend_columns=1):
    ax.axhline(target, color="red", linestyle="--", linewidth=1, label=f"{target} %")
    ax.set_xlabel("epoch"), ax.set_ylabel("test accuracy (%)"), ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=legend_columns)


def save_figure(fig, title, path, margins=None):
    """Margins as fig.subplots_adjust takes them where the figure's layout is known: tight_layout costs as much as
    drawing the figure."""
    fig.suptitle(title)
    fig.subplots_adjust(**margins) if margins else fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    pyplot().close(fig)
