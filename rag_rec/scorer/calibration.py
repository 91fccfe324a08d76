"""Calibration: how far predicted probabilities are from observed frequencies, and the fix.

In: predicted probabilities or raw logits with their 0/1 labels. Out: ECE and Brier
scores, Platt scaling's (a, b), and a reliability diagram written to a PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error over `bins` equal-mass bins."""
    order = np.argsort(probs)
    total = 0.0
    for part in np.array_split(order, bins):
        if len(part):
            total += len(part) * abs(probs[part].mean() - labels[part].mean())
    return float(total / len(probs))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((probs - labels) ** 2))


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Platt scaling (scale, shift): P(label) = sigmoid(scale * logit + shift), by logistic
    regression."""
    from sklearn.linear_model import LogisticRegression  # fitting only: serving skips it

    fit = LogisticRegression(C=1e6).fit(logits.reshape(-1, 1), labels)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def reliability_diagram(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path,
                        bins: int = 15) -> None:
    """Predicted vs observed frequency per equal-mass bin, on linear axes and on log axes
    (candidate lists have base rates near 0.004, invisible on the linear panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
    for ax, log in zip(axes, (False, True)):
        low = 1e-4 if log else 0.0
        ax.plot([low, 1], [low, 1], "k:", label="perfect")
        for name, (probs, labels) in curves.items():
            parts = np.array_split(np.argsort(probs, kind="stable"), bins)
            ax.plot([probs[part].mean() for part in parts],
                    [labels[part].mean() for part in parts], "o-",
                    label=f"{name} (ECE {ece(probs, labels, bins):.3f})")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel("predicted probability" + (" (log)" if log else ""))
        ax.set_ylabel("observed frequency" + (" (log)" if log else ""))
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
