"""Volume change between two scans, its interval, and the expansion calls: pure functions.

**Interval of the change.** Each volume comes with a calibrated interval of its true volume
(postprocess.uncertainty; 95% each). The change's interval is their conservative (Minkowski)
difference, [f_lo - b_hi, f_hi - b_lo]: whenever both volume intervals hold, the true change lies
inside it, so it covers the true change with probability >= 1 - 2(1 - level) (90% for two 95%
intervals) *whatever* the dependence between the two errors. A quadrature of half-widths would be
narrower but assumes independent errors, which two scans of one head segmented by one model are
not (the same bias shows in both: positively correlated errors, for which the conservative
interval over-covers rather than under-covers). The same rule gives the interval of any
difference f - k*b (the relative criterion below).

**Calls.** A criterion "x >= threshold" is answered `yes` when the whole interval of x is at or
above the threshold, `no` when it is wholly below, and `uncertain` when it straddles it; with no
interval (an uncalibrated model) the point value decides. `point` is the bare answer from the
point volumes, as the trial definitions are written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

Interval = Optional[tuple[float, float]]
YES, NO, UNCERTAIN = "yes", "no", "uncertain"


@dataclass(frozen=True)
class ExpansionRules:
    """The common definitions, as data (Dowlatshahi 2011 / Brott 1997 style; trial end points)."""

    hemorrhage_ml: float = 6.0  # hematoma expansion: growth >= 6 mL ...
    hemorrhage_rel: float = 0.33  # ... or >= 33% of the baseline volume
    hemorrhage_large_ml: float = 12.5  # the stricter absolute definition, reported on its own
    infarct_ml: float = 0.0  # infarct growth: follow-up volume larger than baseline by more than this


@dataclass(frozen=True)
class Call:
    """One criterion's answer: the bare point answer and the interval-aware call."""

    definition: str
    point: bool
    call: str  # yes | no | uncertain
    interval: Interval = None  # of the tested quantity, in its own units (mL)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["interval"] = None if self.interval is None else [round(float(v), 4) for v in self.interval]
        return d


@dataclass(frozen=True)
class VolumeChange:
    baseline_ml: float
    followup_ml: float
    baseline_ci: Interval
    followup_ci: Interval

    @property
    def change_ml(self) -> float:
        return self.followup_ml - self.baseline_ml

    @property
    def change_pct(self) -> Optional[float]:
        return change_pct(self.baseline_ml, self.followup_ml)

    @property
    def change_ci(self) -> Interval:
        return difference_interval(self.baseline_ci, self.followup_ci)


def change_pct(baseline_ml: float, followup_ml: float) -> Optional[float]:
    """Relative change in %; None when the baseline is 0 (undefined, not infinite)."""
    return None if baseline_ml <= 0 else 100.0 * (followup_ml - baseline_ml) / baseline_ml


def difference_interval(b: Interval, f: Interval, k: float = 1.0) -> Interval:
    """Interval of f - k*b (k >= 0) from the intervals of f and b: [f_lo - k b_hi, f_hi - k b_lo]."""
    if b is None or f is None:
        return None
    return (float(f[0]) - k * float(b[1]), float(f[1]) - k * float(b[0]))


def call_at_least(value: float, interval: Interval, threshold: float, strict: bool = False) -> tuple[bool, str]:
    """(point, call) for "value >= threshold" (or > with strict)."""
    def ok(v: float) -> bool:
        return v > threshold if strict else v >= threshold

    point = ok(value)
    if interval is None:
        return point, YES if point else NO
    lo, hi = interval
    if ok(lo):
        return point, YES
    if not ok(hi):
        return point, NO
    return point, UNCERTAIN


def any_of(calls: Sequence[Call], definition: str) -> Call:
    """"A or B": yes if any is yes, no if all are no, otherwise uncertain."""
    answers = {c.call for c in calls}
    call = YES if YES in answers else (NO if answers == {NO} else UNCERTAIN)
    return Call(definition, any(c.point for c in calls), call, None)


def _pct(x: float) -> str:
    return f"{100 * x:g}%"


def hemorrhage_expansion(vc: VolumeChange, rules: ExpansionRules = ExpansionRules()) -> Call:
    """Growth >= hemorrhage_ml, or >= hemorrhage_rel of the baseline (only when the baseline is > 0:
    a new bleed has no relative growth and is judged on the mL criterion alone)."""
    absolute = absolute_growth(vc, rules.hemorrhage_ml)
    if vc.baseline_ml <= 0:
        return any_of([absolute], f"growth >= {rules.hemorrhage_ml:g} mL or >= {_pct(rules.hemorrhage_rel)}")
    k = 1.0 + rules.hemorrhage_rel  # f >= (1 + r) b  <=>  f - (1 + r) b >= 0
    x = vc.followup_ml - k * vc.baseline_ml
    iv = difference_interval(vc.baseline_ci, vc.followup_ci, k)
    point, call = call_at_least(x, iv, 0.0)
    relative = Call(f"growth >= {_pct(rules.hemorrhage_rel)}", point, call, iv)
    return any_of([absolute, relative], f"growth >= {rules.hemorrhage_ml:g} mL or >= {_pct(rules.hemorrhage_rel)}")


def absolute_growth(vc: VolumeChange, threshold_ml: float, strict: bool = False) -> Call:
    point, call = call_at_least(vc.change_ml, vc.change_ci, threshold_ml, strict)
    return Call(f"growth {'>' if strict else '>='} {threshold_ml:g} mL", point, call, vc.change_ci)


def infarct_growth(vc: VolumeChange, rules: ExpansionRules = ExpansionRules()) -> Call:
    return absolute_growth(vc, rules.infarct_ml, strict=True)


def new_blood(baseline_ml: float, followup_ml: float, definition: str) -> Call:
    """Present at follow-up, absent at baseline (segmented volumes; no interval)."""
    point = baseline_ml <= 0 < followup_ml
    return Call(definition, point, YES if point else NO, None)
