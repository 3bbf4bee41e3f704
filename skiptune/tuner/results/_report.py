"""One self-contained HTML page of what a database holds: look, don't read.

Per study: the tuned and ρ = 1 sample grids side by side on the same seeds, the validated gain
with its interval, the factor on each skip as a small bar chart and the FreeU values where
searched; per set of alike measurements, the front (NFE against the metric, tuned and ρ = 1).
Images are embedded as ``data:`` URIs and charts drawn as inline SVG, so the page needs no
server, no network and no plotting library. It follows the system's dark theme.
"""

from __future__ import annotations

import base64
import html
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna

from skiptune._files import check_output_path, read_input, write_atomically
from skiptune.errors import SkiptuneError
from skiptune.storage import Storage, artifact_folder
from skiptune.tuner.results._reading import front_report, reading_storage, stored_studies
from skiptune.tuner.results._summary import StudySummary, summarize
from skiptune.tuner.study import GRID_ATTR, NUM_SKIPS_ATTR, grid_artifacts, role_of

__all__ = ["factors_svg", "front_svg", "png_size", "render_report", "write_report"]

_NOMINAL_SKIPS = 9      # bars drawn for a study that stored no skip count (before grids)


@dataclass(frozen=True)
class StudyPage:
    """What the report shows of one study."""

    summary: StudySummary
    grids: dict[str, bytes]          # label ("tuned", "ρ = 1", "paper #3"...) → PNG bytes
    grid_seed: int | None
    num_skips: int | None


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in px of a PNG, from its header (IHDR); ValueError for another file."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def front_svg(tuned: Sequence[tuple[int, float]], baseline: Sequence[tuple[int, float]], *,
              metric: str, width: int = 420, height: int = 240) -> str:
    """NFE (x) against the metric (y, lower is better) as an inline SVG: tuned and ρ = 1."""
    points = [*tuned, *baseline]
    if not points:
        return "<p>no front stored yet</p>"
    pad = 40
    nfes = [p[0] for p in points]
    values = [p[1] for p in points]
    x_lo, x_hi = min(nfes) - 1, max(nfes) + 1
    y_lo, y_hi = 0.0, max(values) * 1.1 or 1.0

    def xy(nfe: float, value: float) -> tuple[float, float]:
        x = pad + (nfe - x_lo) / (x_hi - x_lo) * (width - 2 * pad)
        y = height - pad - (value - y_lo) / (y_hi - y_lo) * (height - 2 * pad)
        return round(x, 1), round(y, 1)

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="NFE against {html.escape(metric)}">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
             'class="axis"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" class="axis"/>',
             f'<text x="{width / 2}" y="{height - 8}" class="label">NFE</text>',
             f'<text x="8" y="{pad - 12}" class="label">{html.escape(metric)}</text>']
    for nfe in sorted(set(nfes)):
        x, _ = xy(nfe, 0)
        parts.append(f'<text x="{x}" y="{height - pad + 16}" class="tick">{nfe}</text>')
    for value in (y_hi / 2, y_hi / 1.1):
        _, y = xy(x_lo, value)
        parts.append(f'<text x="4" y="{y}" class="tick">{value:.3g}</text>')
    for series, css in ((baseline, "baseline"), (tuned, "tuned")):
        drawn = [xy(n, v) for n, v in sorted(series)]
        if len(drawn) > 1:
            path = " ".join(f"{x},{y}" for x, y in drawn)
            parts.append(f'<polyline points="{path}" class="{css}"/>')
        parts.extend(f'<circle cx="{x}" cy="{y}" r="4" class="{css}"/>' for x, y in drawn)
    parts.append(f'<text x="{width - pad - 110}" y="{pad - 12}" class="tuned-key">● tuned</text>'
                 f'<text x="{width - pad - 50}" y="{pad - 12}" class="baseline-key">● ρ = 1</text>')
    parts.append("</svg>")
    return "".join(parts)


def factors_svg(factors: Sequence[float], *, width: int = 260, height: int = 110) -> str:
    """One bar per skip, bottom (left) → top (right), its factor ρ_i; a line marks ρ = 1."""
    if not factors:
        return ""
    top = max(1.2, max(factors))
    bar = (width - 20) / len(factors)
    scale = (height - 24) / top
    parts = [f'<svg class="factors" viewBox="0 0 {width} {height}" role="img" '
             'aria-label="factor on each skip, bottom to top">']
    for i, factor in enumerate(factors):
        h = max(0.0, factor) * scale
        x = 10 + i * bar
        parts.append(f'<rect x="{x + 1:.1f}" y="{height - 14 - h:.1f}" width="{bar - 2:.1f}" '
                     f'height="{h:.1f}" class="bar"><title>skip {i}: {factor:.3f}</title></rect>')
    one = height - 14 - scale
    parts.append(f'<line x1="6" y1="{one:.1f}" x2="{width - 6}" y2="{one:.1f}" class="one"/>')
    parts.append(f'<text x="10" y="{height - 2}" class="tick">bottom</text>'
                 f'<text x="{width - 40}" y="{height - 2}" class="tick">top</text></svg>')
    return "".join(parts)


def _number(value: float | None, spec: str = ".4g") -> str:
    return "—" if value is None or not math.isfinite(value) else format(value, spec)


def _gain_text(summary: StudySummary) -> str:
    if summary.improvement is None:
        return "no gain measured yet"
    text = f"gain {summary.improvement:.0%}"
    if summary.gain_low is not None and summary.gain_high is not None:
        level = summary.validation_level or 0.95
        text += f" ({level:.0%} interval {summary.gain_low:.0%} to {summary.gain_high:.0%})"
    where = (f"validated at N = {summary.validation_num_samples} on fresh seeds"
             if summary.validated else f"search values at N = {summary.num_samples}, "
             "not validated")
    return f"{text}; {where}"


def _image(label: str, data: bytes) -> str:
    width, height = png_size(data)
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="{uri}" width="{width}" height="{height}" '
            f'alt="{html.escape(label)} samples"><figcaption>{html.escape(label)}'
            "</figcaption></figure>")


def _freeu_table(summary: StudySummary) -> str:
    freeu = None if summary.best_schedule is None else summary.best_schedule.freeu
    if freeu is None:
        return ""
    cells = "".join(f"<td>{getattr(freeu, k):.3f}</td>" for k in ("b1", "b2", "s1", "s2"))
    return ("<table><tr><th>FreeU</th><th>b1</th><th>b2</th><th>s1</th><th>s2</th></tr>"
            f"<tr><td>tuned</td>{cells}</tr></table>")


def _study_section(page: StudyPage) -> str:
    s = page.summary
    schedule = s.best_schedule
    rows = (f"<p>{html.escape(s.sampler)}, {s.nfe} NFE, {html.escape(s.metric)}: tuned "
            f"<b>{_number(s.best_value)}</b> against ρ = 1 <b>{_number(s.baseline_value)}</b>"
            f" — {html.escape(_gain_text(s))}</p>")
    if schedule is not None:
        rows += (f"<p>ρ_bottom {schedule.rho_bottom:.3f}, ρ_top {schedule.rho_top:.3f}, "
                 f"shape {html.escape(schedule.shape)}</p>")
        count = page.num_skips or _NOMINAL_SKIPS
        note = "" if page.num_skips else f" (skip count not stored: {count} drawn)"
        rows += (f"<div class='row'>{factors_svg(schedule.factors(count))}"
                 f"<span class='note'>factor on each of {count} skips{note}</span></div>")
    rows += _freeu_table(s)
    if page.grids:
        seeds = ("" if page.grid_seed is None else
                 f" (noise seeds {page.grid_seed} to {page.grid_seed + 15}, fresh for every "
                 "trial)")
        figures = "".join(_image(label, data) for label, data in page.grids.items())
        rows += f"<p class='note'>Samples on the same seeds{seeds}:</p><div class='grids'>"
        rows += figures + "</div>"
    else:
        rows += "<p class='note'>no images stored</p>"
    return (f"<section><h2>{html.escape(s.group)} · {html.escape(s.sampler)} · {s.nfe} NFE"
            f"</h2>{rows}</section>")


_STYLE = """
:root { color-scheme: light dark; --fg: #1d1d1f; --bg: #ffffff; --muted: #666;
        --tuned: #1f6feb; --base: #d1242f; --line: #999; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6e6e6; --bg: #16181c; --muted: #a0a0a0; --tuned: #58a6ff;
          --base: #ff7b72; --line: #777; } }
body { font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg);
       max-width: 1280px; margin: 0 auto; padding: 1rem 1.5rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
section { border-top: 1px solid var(--line); }
.grids { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; flex: 1 1 300px; max-width: 620px; }
figure img { width: 100%; height: auto; image-rendering: pixelated; display: block; }
figcaption, .note { color: var(--muted); font-size: 0.9rem; }
.row { display: flex; align-items: center; gap: 1rem; }
svg.chart { max-width: 520px; width: 100%; } svg.factors { width: 260px; }
svg .axis, svg .one { stroke: var(--line); stroke-width: 1; }
svg .one { stroke-dasharray: 4 3; }
svg text { fill: var(--muted); font-size: 11px; }
svg .tuned { stroke: var(--tuned); fill: var(--tuned); }
svg .baseline { stroke: var(--base); fill: var(--base); }
svg polyline { fill: none; stroke-width: 2; }
svg .tuned-key { fill: var(--tuned); } svg .baseline-key { fill: var(--base); }
svg .bar { fill: var(--tuned); }
table { border-collapse: collapse; margin: 0.5rem 0; }
td, th { border: 1px solid var(--line); padding: 0.2rem 0.6rem; text-align: right; }
"""


def render_report(pages: Sequence[StudyPage], fronts: Sequence[tuple[str, str]], *,
                  source: str) -> str:
    """The whole page: ``fronts`` are (heading, SVG) pairs, one per set of alike points."""
    front_html = "".join(f"<h3>{html.escape(title)}</h3>{svg}" for title, svg in fronts)
    studies = "".join(_study_section(p) for p in pages) or "<p>no skiptune study stored</p>"
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>skiptune report</title><style>{_STYLE}</style></head><body>"
            f"<h1>skiptune report</h1><p class='note'>{html.escape(source)}</p>"
            f"<h2>Front: NFE against the metric</h2>{front_html or '<p>no front stored</p>'}"
            f"{studies}</body></html>")


MAX_GRID_BYTES = 64 << 20
"""Largest sample-grid file a report embeds (bytes): an 8×8 grid of 512 px images is a few
MB; a larger file is skipped as damaged."""


def _grid_bytes(folder: Path | None, trial: optuna.trial.FrozenTrial) -> bytes | None:
    """The trial's latest readable grid, or None (none stored, or its file gone or damaged).

    Each file is read through the bounded reader: a regular file of at most
    :data:`MAX_GRID_BYTES`, never a FIFO or a device (a link to ``/dev/zero``), and only
    under ``folder`` (an id is a plain file name, whatever the database holds).
    """
    if folder is None:
        return None
    for artifact_id in reversed(grid_artifacts(trial)):
        if Path(artifact_id).name != artifact_id or artifact_id in ("", ".", ".."):
            continue                   # not an id Optuna writes: never a path outside
        try:
            data = read_input(folder / artifact_id, what="sample grid",
                              fix="delete it and rerun the search", max_bytes=MAX_GRID_BYTES)
            png_size(data)
            return data
        except (SkiptuneError, ValueError):
            continue                   # deleted or damaged: the page says so, not a crash
    return None


def _page(study: optuna.Study, summary: StudySummary, folder: Path | None) -> StudyPage:
    grids: dict[str, bytes] = {}
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    labelled = []
    if summary.best_trial is not None:
        labelled.append(("tuned", by_number[summary.best_trial]))
    labelled += [("ρ = 1" if role_of(t) == "baseline" else f"{role_of(t)} (trial {t.number})",
                  t) for t in trials if role_of(t) in ("baseline", "paper", "freeu")]
    for label, trial in labelled:
        data = _grid_bytes(folder, trial)
        if data is not None and label not in grids:
            grids[label] = data
    attrs = study.user_attrs
    grid = attrs.get(GRID_ATTR) or {}
    return StudyPage(summary=summary, grids=grids, grid_seed=grid.get("seed"),
                     num_skips=attrs.get(NUM_SKIPS_ATTR))


def write_report(
    db: str | Path | Storage | None,
    path: str | Path,
    *,
    group: str | None = None,
    artifacts: str | Path | None = None,   # the grids' folder; default beside a SQLite file
) -> Path:
    """Write one self-contained HTML page of the studies in ``db`` (of one ``group``).

    Opens the database read-only; the page is written atomically. A study without stored
    grids (none kept, a server database without ``artifacts``, a deleted folder) still gets
    its numbers and says "no images stored". Returns the path written.
    """
    target = check_output_path(path, suffixes=(".html", ".htm"))
    with reading_storage(db) as storage:
        folder = artifact_folder(storage.url, artifacts)
        grids = folder if folder and folder.is_dir() else None
        pages = [_page(study, summarize(study, config), grids)
                 for study, config in stored_studies(storage, group=group)]
        source = storage.display_url
        reports = front_report(storage, group=group)
    pages.sort(key=lambda p: (p.summary.group, p.summary.sampler, p.summary.nfe))
    fronts = [
        (f"{r.metric} at N = {r.num_samples}, seeds from {r.seed}",
         front_svg([(t.nfe, t.value) for t in r.tuned], [(b.nfe, b.value) for b in r.baseline],
                   metric=r.metric))
        for r in reports
    ]
    text = render_report(pages, fronts, source=source)
    return write_atomically(target, text.encode("utf-8"), suffixes=(".html", ".htm"))
