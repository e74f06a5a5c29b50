"""The report's verdicts: one sentence per student and dataset, written from the numbers.

A verdict says whether distillation helps the student (its best setting's % change of
test MSE vs the plain student and the paired 95 % confidence interval over seeds of
:mod:`sdkd.report.stats`: a gain or a loss only when the interval excludes zero, else
"no significant difference", or "suggestive at most" with one seed), whether the
teacher is ahead of the plain student at all (:data:`TEACHER_MARGIN`), how far the
teacher still is, what the student costs next to the teacher, and where in the
spectrum its error moved. Its tone (``good``, ``bad``, ``neutral``) colours it on the
page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdkd.evaluate.format import band_labels
from sdkd.plan import FREQUENCY_SETTINGS
from sdkd.report.fmt import finite, fmt_metric, fmt_pct, plural
from sdkd.report.stats import excludes_zero
from sdkd.report.view import BandMeans, DatasetView


def verdicts(view: DatasetView) -> list[dict[str, str]]:
    """``{"student", "text", "tone"}`` per student of the dataset."""
    out = []
    teacher = view.entry.get("teacher")
    for student in view.students:
        block = view.entry.get("students", {}).get(student, {})
        text, tone = _verdict(view, student, block, teacher)
        extra = [_cost(view, student)]
        if view.bands is not None and block.get("best") and block.get("none"):
            extra.append(_band_sentence(view.bands, student, block["best"]["bands"],
                                        view.none_key))
        text = " ".join([text, *[e for e in extra if e]])
        out.append({"student": student, "text": text, "tone": tone})
    if not view.students:
        out.append({"student": "", "text": "The config lists no student.", "tone": "neutral"})
    return out


def _verdict(view: DatasetView, student: str, block: Mapping[str, Any],
             teacher: Mapping[str, Any] | None) -> tuple[str, str]:
    none, best, settings = block.get("none"), block.get("best"), block.get("settings", {})
    if not none and not best:
        return "no run is ok yet, nothing to compare.", "neutral"
    if view.none_key is None:
        return (f"{view.name} runs no plain-student setting (method none), so the effect of "
                "distillation cannot be measured.", "neutral")
    if not none:
        return (f"the plain-student baseline ({view.none_key}) is missing, so the effect of "
                "distillation cannot be measured.", "neutral")
    if not best:
        return (f"no distilled run is ok yet; the plain student reaches MSE "
                f"{fmt_metric('mse', none['mse'])}.", "neutral")
    change = best.get("mse_change_pct")
    if not finite(change):
        return "the plain student's MSE is 0; no % change.", "neutral"
    change = float(change)
    key = best["bands"]
    if change < 0:
        text = (f"{view.label(key)} lowers the test MSE by {-change:.1f} % vs "
                f"the plain {student}")
        tone = "good"
    else:
        text = (f"distillation does not help: the best setting, "
                f"{view.label(key)}, raises the test MSE by {change:.1f} % vs the plain "
                f"{student}")
        tone = "bad"
    evidence, significant = _evidence(best)
    text += f" ({evidence})"
    if not significant:
        text += (", so no significant difference" if best.get("n_pairs", 0) > 1
                 else ", so suggestive at most")
        tone = "neutral"
    if teacher and finite(teacher.get("mse")) and not _teacher_ahead(teacher, none):
        text = (f"the teacher is no better than the plain student (test MSE "
                f"{fmt_metric('mse', teacher['mse'])} vs {fmt_metric('mse', none['mse'])}): "
                f"distillation cannot help here, so no gain below is a finding. " + text)
        tone = "neutral"
    if teacher and finite(teacher.get("mse")) and best["mse"] > 0:
        lead = 100.0 * (best["mse"] - teacher["mse"]) / best["mse"]
        if lead > 0:
            text += f"; the teacher's MSE is still {lead:.1f} % lower"
        else:
            text += f"; it beats the teacher (MSE {-lead:.1f} % lower than the teacher's)"
        if finite(best.get("gap_closed")):
            text += f" ({100 * best['gap_closed']:.0f} % of the gap closed)"
    text += "."
    method = view.results.method
    if method(key) not in FREQUENCY_SETTINGS:
        freq = {k: v for k, v in settings.items() if method(k) in FREQUENCY_SETTINGS}
        if freq:
            fkey = min(freq, key=lambda k: freq[k]["mse"])
            text += (f" The best setting is a non-frequency baseline; the best "
                     f"frequency-aligned one, {view.label(fkey)}, changes the MSE by "
                     f"{fmt_pct(freq[fkey].get('mse_change_pct'))}.")
    return text, tone


# The teacher must beat the plain student's mean test MSE by this fraction for a
# distillation result to say anything (our choice).
TEACHER_MARGIN = 0.10


def _teacher_ahead(teacher: Mapping[str, Any], none: Mapping[str, Any]) -> bool:
    return float(teacher["mse"]) < (1 - TEACHER_MARGIN) * float(none["mse"])


def _evidence(setting: Mapping[str, Any]) -> tuple[str, bool]:
    """'paired over 3 seeds: −38.2 %, 95 % CI −45.0 to −30.1 %' and whether that
    interval excludes zero (:mod:`sdkd.report.stats`); one seed gives no interval."""
    n = int(setting.get("n_pairs", 0))
    low, high = setting.get("mse_paired_low_pct"), setting.get("mse_paired_high_pct")
    if n < 2 or not (finite(low) and finite(high)):
        return f"{plural(max(n, 1), 'seed')}: no confidence interval", False
    return (f"paired over {n} seeds: {fmt_pct(setting['mse_paired_change_pct'])}, "
            f"95 % CI {fmt_pct(low)} to {fmt_pct(high)}"), excludes_zero(low, high)


def _cost(view: DatasetView, student: str) -> str:
    """'Cost: 4.0 % of the teacher's parameters, 4.9× faster inference (cpu).'"""
    parts = []
    p_s, p_t = view.mean(student, "parameters"), view.mean(view.teacher, "parameters")
    if finite(p_s) and finite(p_t) and p_t > 0:
        parts.append(f"{100 * p_s / p_t:.1f} % of the teacher's parameters")
    f_s, f_t = (view.mean(student, "flops_per_sample"),
                view.mean(view.teacher, "flops_per_sample"))
    if finite(f_s) and finite(f_t) and f_t > 0:
        parts.append(f"{100 * f_s / f_t:.1f} % of its FLOPs")
    l_s, l_t = view.mean(student, "latency_ms"), view.mean(view.teacher, "latency_ms")
    if finite(l_s) and finite(l_t) and l_s > 0:
        devices = view.devices(student, "inference_device")
        where = f" on {', '.join(devices)}" if devices else ""
        parts.append(f"{l_t / l_s:.1f}× the teacher's inference speed{where}")
    if not parts:
        return ""
    return f"Cost: {', '.join(parts)}."


def _band_sentence(bands: BandMeans, student: str, best_key: str,
                   none_key: str | None) -> str:
    """'Where in the spectrum (…, dual vs none): -35.0 % at k < 4, … .'"""
    none = bands.mse.get((student, none_key)) if none_key else None
    best = bands.mse.get((student, best_key))
    if none is None or best is None:
        return ""
    parts = [f"{fmt_pct(100 * (b - n) / n)} at {label}"
             for label, n, b in zip(band_labels(bands.cutoffs), none, best, strict=True)
             if n > 0]
    if not parts:
        return ""
    return f"Where in the spectrum (MSE per band, {best_key} vs {none_key}): {', '.join(parts)}."
