"""An evaluation's result: metric means with intervals, per-case values, ops numbers.

The same `EvalReport` comes out of every eval kind, is written as JSON (metric means at
the top level, so `jq .decline_accuracy` works), read back by `tether eval compare`, and
checked against a thresholds file. `to_html` renders a self-contained page (inline SVG
plots from matplotlib) that opens offline.
"""

from __future__ import annotations

import html
import io
import json
import math
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from tether.errors import ConfigError, DatasetError
from tether.evals.stats import Difference, Estimate, estimate, paired_difference

Scalar = str | int | float | bool | None


class EvalReport(BaseModel):
    kind: str
    dataset: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    config: dict[str, Scalar] = {}
    repeats: int = 1
    metrics: dict[str, Estimate]
    #: Per case id, the value of each metric (mean over repeats; NaN: not applicable).
    cases: dict[str, dict[str, float]] = {}
    ops: dict[str, float] = {}
    latencies_ms: list[float] = []

    @classmethod
    def from_cases(
        cls,
        *,
        kind: str,
        dataset: str,
        cases: dict[str, dict[str, float]],
        metric_names: list[str],
        **fields: Any,
    ) -> EvalReport:
        metrics = {
            name: estimate([values.get(name, math.nan) for values in cases.values()])
            for name in metric_names
        }
        return cls(kind=kind, dataset=dataset, cases=cases, metrics=metrics, **fields)

    def means(self) -> dict[str, float | None]:
        return {name: m.mean for name, m in self.metrics.items()}

    def to_json(self) -> dict[str, Any]:
        body = json.loads(self.model_dump_json())
        # NaN is not JSON: a case's non-applicable metric is written as null.
        body["cases"] = {
            cid: {
                k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in vals.items()
            }
            for cid, vals in self.cases.items()
        }
        return {**self.means(), **self.ops, **body}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> EvalReport:
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            body["cases"] = {
                cid: {k: (math.nan if v is None else v) for k, v in vals.items()}
                for cid, vals in body.get("cases", {}).items()
            }
            return cls.model_validate({k: body[k] for k in cls.model_fields if k in body})
        except (OSError, json.JSONDecodeError, ValidationError, AttributeError) as exc:
            raise DatasetError(f"{path}: not an eval report written by tether: {exc}") from exc

    # -- thresholds ------------------------------------------------------------------------

    def check(self, thresholds: dict[str, dict[str, float]]) -> list[str]:
        return check_thresholds({**self.means(), **self.ops}, thresholds)


def check_thresholds(
    values: Mapping[str, object], thresholds: dict[str, dict[str, float]]
) -> list[str]:
    """Failures against `{metric: {"min": x} | {"max": y}}`; a missing or NaN value fails."""
    failures = []
    for metric, bounds in thresholds.items():
        value = values.get(metric)
        if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
            failures.append(f"{metric}: no value to check")
            continue
        if "min" in bounds and value < bounds["min"]:
            failures.append(f"{metric} = {value:.4f} < min {bounds['min']}")
        if "max" in bounds and value > bounds["max"]:
            failures.append(f"{metric} = {value:.4f} > max {bounds['max']}")
    return failures


def load_thresholds(path: Path, kind: str) -> dict[str, dict[str, float]]:
    """The `[kind]` table of a TOML thresholds file: `metric = 0.7` (a minimum) or
    `metric = { min = 0.7 }` / `{ max = 25.0 }`."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read thresholds: {exc}") from exc
    table = data.get(kind)
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{path}: no [{kind}] thresholds")
    out: dict[str, dict[str, float]] = {}
    for metric, bound in table.items():
        if isinstance(bound, int | float) and not isinstance(bound, bool):
            out[metric] = {"min": float(bound)}
        elif isinstance(bound, dict) and bound and set(bound) <= {"min", "max"}:
            out[metric] = {k: float(v) for k, v in bound.items()}
        else:
            raise ConfigError(f"{path}: [{kind}] {metric} must be a number or {{min, max}}")
    return out


def compare(a: EvalReport, b: EvalReport) -> list[Difference]:
    names = [n for n in a.metrics if n in b.metrics]
    return [
        paired_difference(
            name,
            {cid: vals.get(name, math.nan) for cid, vals in a.cases.items()},
            {cid: vals.get(name, math.nan) for cid, vals in b.cases.items()},
        )
        for name in names
    ]


# -- HTML -------------------------------------------------------------------------------------


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    return buffer.getvalue()[buffer.getvalue().index("<svg") :]


def to_html(report: EvalReport) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    shown = {k: m for k, m in report.metrics.items() if m.mean is not None}
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(shown), 2) + 1))
    names = list(shown)
    means = [shown[n].mean or 0.0 for n in names]
    low = [max((shown[n].mean or 0.0) - (shown[n].ci_low or 0.0), 0.0) for n in names]
    high = [max((shown[n].ci_high or 0.0) - (shown[n].mean or 0.0), 0.0) for n in names]
    ax.barh(names, means, xerr=[low, high], color="#4c72b0", capsize=3)
    ax.invert_yaxis()
    ax.set_xlabel("mean with 95% interval")
    bars = _svg(fig)
    plt.close(fig)
    latency = ""
    if report.latencies_ms:
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.hist(
            report.latencies_ms,
            bins=min(40, max(5, len(report.latencies_ms) // 5)),
            color="#55a868",
        )
        ax.set_xlabel("latency per case (ms)")
        ax.set_ylabel("cases")
        latency = _svg(fig)
        plt.close(fig)
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{m.mean:.4f}</td>"
        f"<td>[{(m.ci_low or 0):.4f}, {(m.ci_high or 0):.4f}]</td><td>{m.n}</td></tr>"
        for n, m in shown.items()
    )
    ops = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>" for k, v in report.ops.items()
    )
    config = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in report.config.items()
    )
    title = f"tether eval {report.kind}: {report.dataset}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;margin:1rem 0}}td,th{{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}}
svg{{max-width:100%;height:auto}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{report.created_at:%Y-%m-%d %H:%M UTC}; {len(report.cases)} cases, {report.repeats} run(s).</p>
<h2>Metrics</h2><table><tr><th>metric</th><th>mean</th><th>95% interval</th><th>n</th></tr>{rows}</table>
<figure>{bars}</figure>
<h2>Operations</h2><table>{ops}</table>
{f"<figure>{latency}</figure>" if latency else ""}
<h2>Configuration</h2><table>{config}</table>
</body></html>
"""
