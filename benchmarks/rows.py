"""A benchmark row: one measured value against its target, and whether it is met.

Every row can fail: its target is a bound the measurement can cross (a minimum speed-up, a maximum
overhead, a band for a scaling exponent), and some rows carry a gate besides, a second condition
that must hold for the number to mean what it says (the faster judge must judge as well). The rows'
constructors take measurements, so a test can hand them degraded ones and see them fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Row:
    name: str
    value: float | None
    low: float | None = None  # the target: low <= value <= high (None: open)
    high: float | None = None
    detail: str = ""
    gate: str | None = None  # None: no gate; "": the gate holds; otherwise why it does not

    @property
    def met(self) -> bool | None:
        if self.value is None or (self.low is None and self.high is None):
            return None
        inside = (self.low is None or self.value >= self.low) and (self.high is None or self.value <= self.high)
        return inside and not self.gate

    def target(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:g}–{self.high:g}"
        return f"≥ {self.low:g}" if self.low is not None else (f"≤ {self.high:g}" if self.high is not None else "–")

    def as_dict(self) -> dict:
        return {"name": self.name, "value": None if self.value is None else round(self.value, 3),
                "target": self.target(), "met": self.met, "detail": self.detail + (f"; not met: {self.gate}"
                                                                                  if self.gate else "")}


def speedup(name: str, fast: float, slow: float, low: float, detail: str) -> Row:
    """A ratio slow / fast of two timings of the same job (or fast / slow of two throughputs)."""
    return Row(name, slow / fast if fast else None, low=low, detail=detail)


def overhead(name: str, ours: float, reference: float, high: float, detail: str) -> Row:
    return Row(name, ours / reference if reference else None, high=high, detail=detail)


def judge_speed(name: str, t_fast: float, t_sampled: float, acc_fast: float | None, acc_sampled: float | None,
                low: float, detail: str, parsed: tuple[float | None, float | None] = (1.0, 1.0),
                chance: float = 0.55, min_parsed: float = 0.9) -> Row:
    """Time ratio of K sampled judgments to the faster judge, met only when both judges parse (a share
    above `min_parsed` of their judgments), the baseline is above chance (a pairwise accuracy above
    `chance`: a baseline that cannot score makes any ratio meaningless), and the faster judge's pairwise
    accuracy against the checker is within 2 points of the sampled judge's, or above it."""
    gate = ""
    if acc_fast is None or acc_sampled is None:
        gate = "no accuracy to compare"
    elif any(p is None or p < min_parsed for p in parsed):
        gate = f"a judge's parse rate is below {min_parsed:g} ({_f(parsed[0])} vs {_f(parsed[1])})"
    elif acc_sampled <= chance:
        gate = f"the baseline is at chance (pairwise accuracy {acc_sampled:.3f} <= {chance:g})"
    elif acc_fast < acc_sampled - 0.02:
        gate = f"the faster judge is less accurate ({acc_fast:.3f} vs {acc_sampled:.3f})"
    accuracies = f"pairwise accuracy {_f(acc_fast)} vs {_f(acc_sampled)}; parsed {_f(parsed[0])} vs {_f(parsed[1])}"
    return Row(name, t_sampled / t_fast if t_fast else None, low=low, detail=f"{detail}; {accuracies}", gate=gate)


def exponent(name: str, points: list[tuple[float, float]], detail: str, band=(0.9, 1.1)) -> Row:
    """The least-squares slope of log(time) on log(size): 1 = linear."""
    xs, ys = [math.log(x) for x, _ in points], [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    sizes = ", ".join(f"{x:g}→{t:.2f}s" for x, t in points)
    return Row(name, slope, low=band[0], high=band[1], detail=f"{detail}: {sizes}")


def at_scale(name: str, seconds: float, peak_mb: float, max_seconds: float, max_mb: float, detail: str) -> Row:
    gate = "" if peak_mb <= max_mb else f"peak memory {peak_mb:.0f} MB > {max_mb:.0f} MB"
    return Row(name, seconds, high=max_seconds, detail=f"{detail}; {seconds:.2f} s, peak {peak_mb:.0f} MB "
                                                        f"(target < {max_mb:.0f} MB)", gate=gate)


def outside_share(name: str, rounds: list[tuple[float, float]], high: float | None, detail: str) -> Row:
    """The share of wall time spent outside model calls, averaged over (wall, inside) measurements."""
    share = sum(1 - inside / wall for wall, inside in rounds) / len(rounds) if rounds else None
    shown = "; ".join(f"{wall:.1f} s, {inside:.1f} s inside" for wall, inside in rounds)
    return Row(name, share, high=high, detail=f"{detail}: {shown}")


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
