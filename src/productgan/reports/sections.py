"""The report's tables, read from the JSON reports a run folder holds: evaluate's and uplift's.

Every value comes from a file that may have been edited, so each is shown as escaped text, and a
report whose parts are not what the command writes is named and left out.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from productgan import run


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def text(value: Any) -> str:
    """A value read from a file, as HTML text: whatever it holds is shown, never run as markup."""
    return html.escape(str(value))


def number(value: Any, spec: str = ".4g") -> str:
    """A number read from a file, formatted with ``spec``; anything else as escaped text ("" for none)."""
    if is_number(value):
        return format(value, spec)
    return "" if value is None else text(value)


def report_tables(folder: Path, table, kind: str) -> str:
    """``table(report)`` for every JSON report in ``folder``, each under its name; a file that is
    not such a report (``table`` gives None) is named and left out."""
    parts = []
    for path in sorted(p for p in folder.glob("*.json") if not p.name.startswith(".")):
        try:
            report: Any = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            report = None
        shown = table(report) if isinstance(report, dict) else None
        parts.append(
            f"<h3>{text(path.name)}</h3>{shown}"
            if shown
            else f"<p class=note>{text(path.name)} is not an {kind} report this page can show; left out.</p>"
        )
    return "".join(parts)


def evaluation_tables(run_dir: Path) -> str:
    return report_tables(run_dir / run.EVALUATION_DIR, evaluation_table, "evaluation") or (
        "<p>No evaluation yet: run <code>productgan evaluate RUN_DIR</code>.</p>"
    )


def evaluation_table(report: dict[str, Any]) -> str | None:
    """One evaluation report as a note on its protocol and a table of its metrics; None when its
    parts are not the objects a report holds."""
    metrics, floor, protocol = report.get("metrics"), report.get("real_data_floor") or {}, report.get("protocol")
    shares = metrics.get("class_shares") or {} if isinstance(metrics, dict) else None
    if not all(isinstance(part, dict) for part in (metrics, floor, protocol, shares)):
        return None
    rows = "".join(
        f"<tr><td>{text(key)}</td><td>{number(value)}</td><td>{number(floor.get(key))}</td></tr>"
        for key, value in metrics.items()
        if is_number(value)
    )
    share_text = ", ".join(f"{text(name)} {number(share, '.1%')}" for name, share in shares.items())
    temperature = protocol.get("latent_temperature", 1.0)
    at = "" if temperature == 1.0 else f", latent temperature {number(temperature, 'g')}"
    return (
        f"<p class=note>{text(protocol.get('extractor', ''))}; {number(protocol.get('num_generated'), '')} "
        f"generated vs {number(protocol.get('num_reference'), '')} images of the "
        f"{text(protocol.get('reference_split'))} split, seed {number(protocol.get('seed'), '')}"
        f"{at}</p>"
        f"<table><tr><th>metric</th><th>generated</th><th>real floor</th></tr>{rows}</table>"
        + (f"<p>Predicted classes of the generated images: {share_text}</p>" if share_text else "")
    )


def uplift_tables(run_dir: Path) -> str:
    """A table per ``productgan uplift`` report of the run (RUN/uplift/*.json); "" when there is none."""
    return report_tables(run_dir / run.UPLIFT_DIR, uplift_table, "uplift")


def _points(interval: Any) -> str:
    """A difference of shares as signed points with its interval (escaped text for anything else)."""
    if not isinstance(interval, dict) or not is_number(interval.get("mean")):
        return ""
    ci = interval.get("ci95")
    return f"{100 * interval['mean']:+.1f}" + (f" ± {100 * ci:.1f}" if is_number(ci) else "")


def uplift_table(report: dict[str, Any]) -> str | None:
    """One uplift report: recall per category with and without the synthetic set, the verdicts and
    the recommendation; None when its parts are not what uplift writes."""
    categories, accuracy, advice = report.get("categories"), report.get("accuracy"), report.get("recommendation")
    if not isinstance(categories, dict) or not isinstance(accuracy, dict) or not isinstance(advice, list):
        return None
    rows = []
    for name, row in categories.items():
        if not isinstance(row, dict):
            return None
        real, with_synthetic = row.get("recall_real") or {}, row.get("recall_with_synthetic") or {}
        rows.append(
            f"<tr><td>{text(name)}</td><td>{number(row.get('real_images'), ',')}</td>"
            f"<td>{number(row.get('synthetic_images'), ',')}</td><td>{number(real.get('mean'), '.1%')}</td>"
            f"<td>{number(with_synthetic.get('mean'), '.1%')}</td><td>{_points(row.get('difference'))}</td>"
            f"<td>{text(row.get('verdict', ''))}</td></tr>"
        )
    rows.append(
        f"<tr><th>accuracy</th><td></td><td></td><td>{number((accuracy.get('real') or {}).get('mean'), '.1%')}</td>"
        f"<td>{number((accuracy.get('with_synthetic') or {}).get('mean'), '.1%')}</td>"
        f"<td>{_points(accuracy.get('difference'))}</td><td>{text(accuracy.get('verdict', ''))}</td></tr>"
    )
    return (
        f"<p class=note>{text(report.get('synth', ''))}: the {text(report.get('recipe', ''))} recipe, "
        f"{number(report.get('seeds'), '')} seeds of {number(report.get('steps'), '')} steps, scored on "
        f"{text(report.get('scored_on', ''))}. Differences in points, ± a 95% interval.</p>"
        "<table><tr><th>category</th><th>real images</th><th>synthetic</th><th>recall, real only</th>"
        "<th>with synthetic</th><th>difference</th><th>verdict</th></tr>"
        + "".join(rows)
        + "</table>"
        + "".join(f"<p>{text(line)}</p>" for line in advice)
    )
