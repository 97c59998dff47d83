"""How often rlnorm's spread and non-inferiority tests reject when their null hypothesis is true: the figures
docs/method.md quotes. Deterministic (seeded); about 40 minutes on one core (the spread part 30, the
non-inferiority part 10), or one part alone:

    python docs/levels.py [spread] [noninferiority]

Spread: two groups of equal spread, shifted apart or from one distribution ("tied": three levels; "capped":
half the runs at a cap, as CartPole's 500): Brown-Forsythe, the exact rank test on the deviations (each
group's structural smallest dropped), the permutation test of the mean absolute deviations, and the three
together (all must reject: rlnorm's test), rejections at the 0.01 level. Non-inferiority: runs
with P(X > Y) exactly at the margin 0.35, the floored Welch t test (its one-sided decision, at the level)
against a z test on DeLong's variance alone, rejections at the 0.0011 level (0.05 over a 46-test Holm family;
the floored test cannot reach it at 3 runs a side).
"""

from __future__ import annotations

import math
import sys

import numpy as np
from scipy import stats as sps

from rlnorm.analysis import stats as st

MARGIN = 0.35


def spread_levels(draws: int, rng: np.random.Generator, level: float = 0.01) -> None:
    def tied(n: int) -> np.ndarray:
        return rng.choice([0.8, 0.9, 1.0], size=n, p=[0.15, 0.25, 0.6])

    def capped(n: int) -> np.ndarray:
        return np.minimum(rng.normal(1.0, 0.05, size=n), 1.0)

    pairs = {"normal, apart": lambda n: (rng.normal(size=n), rng.normal(size=n) + 3.0),
             "exponential, apart": lambda n: (-rng.exponential(size=n), -rng.exponential(size=n) + 3.0),
             "tied, apart": lambda n: (tied(n), tied(n) + 3.0),
             "capped, apart": lambda n: (capped(n), capped(n) + 3.0),
             "tied, alike": lambda n: (tied(n), tied(n)),
             "capped, alike": lambda n: (capped(n), capped(n))}
    print(f"spread, equal spreads, rejections at {level} / {level}")
    for name, sample in pairs.items():
        for n in (4, 10):
            brown, rank, permutation, together = [], [], [], []
            for _ in range(draws):
                x, y = sample(n)
                spread = st.spread_test([x], [y])
                brown.append(spread.brown_forsythe.pvalue < level)
                rank.append(spread.rank.pvalue < level)
                permutation.append(spread.permutation.pvalue < level)
                together.append(spread.combined.pvalue < level)
            print(f"  {name:18s} {n:2d} vs {n:2d}: brown-forsythe {np.mean(brown) / level:.2f}x, rank test on "
                  f"deviations {np.mean(rank) / level:.2f}x, permutation {np.mean(permutation) / level:.2f}x, "
                  f"all three (rlnorm's) {np.mean(together) / level:.2f}x", flush=True)


def delong_z_pvalue(x: np.ndarray, y: np.ndarray) -> float:
    """One-sided z test of P(X > Y) > MARGIN on DeLong's variance alone (the test rlnorm no longer uses)."""
    wins = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    variance = wins.mean(axis=1).var(ddof=1) / x.size + wins.mean(axis=0).var(ddof=1) / y.size
    if variance == 0:
        return 0.0 if wins.mean() > MARGIN else 1.0
    return float(sps.norm.sf((wins.mean() - MARGIN) / math.sqrt(variance)))


def noninferiority_levels(draws: int, rng: np.random.Generator, level: float = 0.0011) -> None:
    # Normal runs: P(X > Y) = Phi(shift / sqrt 2). Exponential: P(X + s > Y) = exp(s) / 2 for s < 0.
    normal_shift, exponential_shift = math.sqrt(2) * sps.norm.ppf(MARGIN), math.log(2 * MARGIN)
    samplers = {"normal": lambda n: (rng.normal(normal_shift, size=n), rng.normal(size=n)),
                "exponential": lambda n: (rng.exponential(size=n) + exponential_shift, rng.exponential(size=n))}
    print(f"non-inferiority at the margin, rejections at {level} / {level}")
    for name, sample in samplers.items():
        for n in (3, 7, 10, 15):
            floored, delong = [], []
            for _ in range(draws):
                x, y = sample(n)
                result = st.noninferiority_test([x], [y], MARGIN)[1]
                floored.append(result.statistic > 0 and result.pvalue / 2 < level)
                delong.append(delong_z_pvalue(x, y) < level)
            print(f"  {name:12s} {n:2d} vs {n:2d}: floored welch t {np.mean(floored) / level:.2f}x, "
                  f"z on delong {np.mean(delong) / level:.2f}x")


if __name__ == "__main__":
    parts = sys.argv[1:] or ["spread", "noninferiority"]
    if not set(parts) <= {"spread", "noninferiority"}:
        sys.exit(f"usage: python docs/levels.py [spread] [noninferiority], got {' '.join(parts)}")
    # A generator per part: each part's figures are the same run alone or after the other.
    if "spread" in parts:
        spread_levels(2000, np.random.default_rng(0))
    if "noninferiority" in parts:
        noninferiority_levels(20000, np.random.default_rng(1))
