"""The statistics of a campaign report: treated against holdout, and variants against each other."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import chi2_contingency

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Lift:
    treated_rate: float
    holdout_rate: float
    absolute: float  # treated rate - holdout rate
    absolute_ci95: tuple[float, float]  # Wald interval of the difference (unpooled)
    relative: float | None  # treated / holdout - 1; None when the holdout never converted
    relative_ci95: tuple[float, float] | None  # from the log of the rate ratio (Katz)
    p_value: float  # two-sided, two-proportion z test (pooled)


def lift(treated_converted: int, treated: int, holdout_converted: int, holdout: int) -> Lift | None:
    """The lift of converting in the treated group over the holdout; None without both groups."""
    if treated <= 0 or holdout <= 0:
        return None
    p_t, p_c = treated_converted / treated, holdout_converted / holdout
    diff = p_t - p_c
    se = math.sqrt(p_t * (1 - p_t) / treated + p_c * (1 - p_c) / holdout)
    pooled = (treated_converted + holdout_converted) / (treated + holdout)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / treated + 1 / holdout))
    p_value = math.erfc(abs(diff) / se_pooled / math.sqrt(2)) if se_pooled > 0 else 1.0
    relative = relative_ci = None
    if holdout_converted > 0:
        relative = p_t / p_c - 1
        if treated_converted > 0:
            se_log = math.sqrt(1 / treated_converted - 1 / treated + 1 / holdout_converted - 1 / holdout)
            log_ratio = math.log(p_t / p_c)
            relative_ci = (math.exp(log_ratio - Z95 * se_log) - 1, math.exp(log_ratio + Z95 * se_log) - 1)
    return Lift(p_t, p_c, diff, (diff - Z95 * se, diff + Z95 * se), relative, relative_ci, p_value)


@dataclass(frozen=True)
class VariantTest:
    metric: str
    chi2: float
    p_value: float
    significant: bool  # at the 5% level


def compare(metric: str, successes: list[int], totals: list[int]) -> VariantTest | None:
    """Chi-square test that the variants' rates are the same (k by 2 table); None if it cannot run."""
    if len(totals) < 2 or any(t <= 0 for t in totals):
        return None
    table = [[s, t - s] for s, t in zip(successes, totals, strict=True)]
    if sum(successes) == 0 or sum(t - s for s, t in zip(successes, totals, strict=True)) == 0:
        return VariantTest(metric, 0.0, 1.0, False)
    result = chi2_contingency(table, correction=len(totals) == 2)
    p_value = float(result.pvalue)
    return VariantTest(metric, float(result.statistic), p_value, p_value < 0.05)
