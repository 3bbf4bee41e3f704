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
from skiptune.errors import ConfigurationError, SkiptuneError
from skiptune.storage import Storage, artifact_folder
from skiptune.tuner.results._labels import gain_text, measured_on
from skiptune.tuner.results._reading import (
    FrontReport,
    front_report,
    reading_storage,
    stored_studies,
)
from skiptune.tuner.results._summary import StudySummary, summarize
from skiptune.tuner.study import (
    GRID_ATTR,
    NUM_SKIPS_ATTR,
    grid_artifacts,
    role_of,
    schedule_from_params,
)

__all__ = ["FrontSeries", "factors_svg", "front_series", "front_svg", "png_size",
           "render_report", "write_report"]

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


@dataclass(frozen=True)
class FrontSeries:
    """One sampler's tuned or ρ = 1 points of a front chart: (NFE, value) pairs."""

    sampler: str
    kind: str                          # "tuned" or "baseline"
    points: tuple[tuple[int, float], ...]


# Okabe–Ito colours: told apart with colour-blindness, readable on light and dark pages.
_PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    """About ``count`` round values from ``low`` to ``high``, for an axis."""
    step = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= step)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


@dataclass(frozen=True)
class _Frame:
    """Where data coordinates land in a chart: the plot area and the axes' ranges."""

    left: float
    top: float
    right: float
    bottom: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def xy(self, x: float, y: float) -> tuple[float, float]:
        (x_lo, x_hi), (y_lo, y_hi) = self.x_range, self.y_range
        px = self.left + (x - x_lo) / (x_hi - x_lo) * (self.right - self.left)
        py = self.bottom - (y - y_lo) / (y_hi - y_lo) * (self.bottom - self.top)
        return round(px, 1), round(py, 1)


def _front_frame(points: Sequence[tuple[int, float]], width: int, height: int) -> _Frame:
    nfes = [n for n, _ in points]
    values = [v for _, v in points]
    y_lo = min(0.0, min(values))                  # KID can be negative: keep it in view
    y_hi = max(values) * 1.1 if max(values) > 0 else y_lo + 1.0
    return _Frame(left=56, top=16, right=width - 150, bottom=height - 40,
                  x_range=(min(nfes) - 1, max(nfes) + 1), y_range=(y_lo, max(y_hi, y_lo + 1e-9)))


def _series_svg(series: FrontSeries, frame: _Frame, colour: str) -> str:
    """One series: a polyline (never filled) through its points, by NFE; tuned points are
    dots and a solid line, ρ = 1 points squares and a dashed line."""
    drawn = [(n, v, *frame.xy(n, v)) for n, v in sorted(series.points)]
    kind = "tuned" if series.kind == "tuned" else "ρ = 1"
    parts = [f'<g class="series {series.kind}" data-sampler="{html.escape(series.sampler)}" '
             f'data-kind="{series.kind}" style="color: {colour}">']
    if len(drawn) > 1:
        path = " ".join(f"{x},{y}" for _, _, x, y in drawn)
        parts.append(f'<polyline points="{path}" class="line {series.kind}" fill="none" '
                     'stroke="currentColor"/>')
    for nfe, value, x, y in drawn:
        title = f"<title>{html.escape(series.sampler)} {kind}, {nfe} NFE: {value:.4g}</title>"
        if series.kind == "tuned":
            parts.append(f'<circle cx="{x}" cy="{y}" r="4" class="point" fill="currentColor" '
                         f'data-nfe="{nfe}">{title}</circle>')
        else:
            parts.append(f'<rect x="{x - 4}" y="{y - 4}" width="8" height="8" class="point" '
                         f'fill="none" stroke="currentColor" data-nfe="{nfe}">{title}</rect>')
    return "".join(parts) + "</g>"


def _front_axes(frame: _Frame, nfes: Sequence[int], metric: str) -> list[str]:
    width = frame.right - frame.left
    parts = [f'<rect class="plot-area" x="{frame.left}" y="{frame.top}" width="{width}" '
             f'height="{frame.bottom - frame.top}" fill="none"/>',
             f'<line x1="{frame.left}" y1="{frame.bottom}" x2="{frame.right}" '
             f'y2="{frame.bottom}" class="axis"/>',
             f'<line x1="{frame.left}" y1="{frame.top}" x2="{frame.left}" y2="{frame.bottom}" '
             'class="axis"/>',
             f'<text x="{frame.left + width / 2}" y="{frame.bottom + 32}" class="label">NFE'
             "</text>",
             f'<text x="4" y="{frame.top - 4}" class="label">{html.escape(metric)}</text>']
    for nfe in sorted(set(nfes)):
        x, _ = frame.xy(nfe, frame.y_range[0])
        parts.append(f'<text x="{x - 4}" y="{frame.bottom + 16}" class="tick">{nfe}</text>')
    for value in _ticks(*frame.y_range):
        _, y = frame.xy(frame.x_range[0], value)
        parts.append(f'<text x="4" y="{y + 4}" class="tick">{value:.4g}</text>'
                     f'<line x1="{frame.left - 4}" y1="{y}" x2="{frame.left}" y2="{y}" '
                     'class="axis"/>')
    return parts


def _front_legend(samplers: Sequence[str], frame: _Frame) -> list[str]:
    x = frame.right + 16
    parts = []
    for i, sampler in enumerate(samplers):
        y = frame.top + 8 + 18 * i
        colour = _PALETTE[i % len(_PALETTE)]
        parts.append(f'<text x="{x}" y="{y}" class="key" style="fill: {colour}">'
                     f"■ {html.escape(sampler)}</text>")
    y = frame.top + 8 + 18 * len(samplers) + 8
    parts.append(f'<text x="{x}" y="{y}" class="tick">● — tuned</text>'
                 f'<text x="{x}" y="{y + 16}" class="tick">□ - - ρ = 1</text>')
    return parts


def front_svg(series: Sequence[FrontSeries], *, metric: str, width: int = 640,
              height: int = 300) -> str:
    """NFE (x) against the metric (y, lower is better) as an inline SVG: one series per
    sampler and kind (tuned, ρ = 1), each its own unfilled line, a colour per sampler.

    Non-finite values are left out; every point drawn lies inside the plot area.
    """
    finite = [FrontSeries(s.sampler, s.kind, tuple(p for p in s.points if math.isfinite(p[1])))
              for s in series]
    finite = [s for s in finite if s.points]
    points = [p for s in finite for p in s.points]
    if not points:
        return "<p>no front stored yet</p>"
    frame = _front_frame(points, width, height)
    samplers = sorted({s.sampler for s in finite})
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="NFE against {html.escape(metric)}, per sampler">',
             *_front_axes(frame, [n for n, _ in points], metric)]
    for s in sorted(finite, key=lambda s: (s.sampler, s.kind)):
        colour = _PALETTE[samplers.index(s.sampler) % len(_PALETTE)]
        parts.append(_series_svg(s, frame, colour))
    parts += _front_legend(samplers, frame)
    parts.append("</svg>")
    return "".join(parts)


def factors_svg(factors: Sequence[float], *, width: int = 300, height: int = 120) -> str:
    """One bar per skip, bottom (left) → top (right), its factor ρ_i, on a y scale of ρ with
    ticks at 0, 0.5 and 1; a dashed line marks ρ = 1."""
    if not factors:
        return ""
    top = max(1.2, max(factors))
    left, base = 34, height - 14
    bar = (width - left - 6) / len(factors)
    scale = (base - 6) / top
    parts = [f'<svg class="factors" viewBox="0 0 {width} {height}" role="img" '
             'aria-label="factor on each skip, bottom to top">',
             f'<line x1="{left - 2}" y1="6" x2="{left - 2}" y2="{base}" class="axis"/>']
    for tick in (0.0, 0.5, 1.0):
        y = base - tick * scale
        parts.append(f'<text x="4" y="{y + 4:.1f}" class="tick">{tick:.1f}</text>'
                     f'<line x1="{left - 6}" y1="{y:.1f}" x2="{left - 2}" y2="{y:.1f}" '
                     'class="axis"/>')
    for i, factor in enumerate(factors):
        h = max(0.0, factor) * scale
        x = left + i * bar
        parts.append(f'<rect x="{x + 1:.1f}" y="{base - h:.1f}" width="{bar - 2:.1f}" '
                     f'height="{h:.1f}" class="bar"><title>skip {i}: {factor:.3f}</title></rect>')
    one = base - scale
    parts.append(f'<line x1="{left - 2}" y1="{one:.1f}" x2="{width - 4}" y2="{one:.1f}" '
                 'class="one"/>')
    parts.append(f'<text x="{left}" y="{height - 2}" class="tick">bottom</text>'
                 f'<text x="{width - 30}" y="{height - 2}" class="tick">top</text>'
                 f'<text x="4" y="12" class="tick">ρ</text></svg>')
    return "".join(parts)


def _number(value: float | None, spec: str = ".4g") -> str:
    return "—" if value is None or not math.isfinite(value) else format(value, spec)


def _gain_text(summary: StudySummary) -> str:
    """The gain as the CLI words it (``gain 7% [-5%, 14%] … not established …``) and the N
    and seeds it was measured on."""
    if summary.improvement is None:
        return "no gain measured yet"
    text = gain_text(summary.improvement, summary.gain_low, summary.gain_high,
                     level=summary.validation_level)
    blocks = summary.validation_blocks or 1
    where = (f"validated on fresh seeds, chosen on {blocks} block(s) of them"
             if summary.validated else "the search's, not validated")
    on = measured_on(summary.measured_num_samples, summary.measured_seed)
    return f"{text}; {on} ({where})"


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
            f" — <span class='gain'>{html.escape(_gain_text(s))}</span></p>")
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
.grids { display: grid; gap: 1rem;
         grid-template-columns: repeat(auto-fill, minmax(min(100%, 440px), 1fr)); }
figure { margin: 0; }
figure img { width: 100%; height: auto; image-rendering: pixelated; display: block; }
figcaption, .note { color: var(--muted); font-size: 0.9rem; }
.row { display: flex; align-items: center; gap: 1rem; }
svg.chart { max-width: 760px; width: 100%; } svg.factors { width: 300px; }
svg .axis, svg .one { stroke: var(--line); stroke-width: 1; }
svg .one { stroke-dasharray: 4 3; }
svg text { fill: var(--muted); font-size: 11px; }
svg polyline.line { fill: none; stroke-width: 2; }
svg polyline.baseline { stroke-dasharray: 6 4; }
svg .plot-area { stroke: none; } svg text.key { font-size: 12px; }
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


def _known_label(trial: optuna.trial.FrozenTrial) -> str:
    """``ρ = 1``, ``paper ρ 0.55→1.00 (trial 1)`` or ``freeu b1.50/1.60 s0.90/0.20 (trial 2)``:
    a known point's grid says which schedule it is."""
    role = role_of(trial)
    if role == "baseline":
        return "ρ = 1"
    schedule = schedule_from_params(trial.params)
    if role == "freeu" and schedule.freeu is not None:
        f = schedule.freeu
        what = f"b{f.b1:.2f}/{f.b2:.2f} s{f.s1:.2f}/{f.s2:.2f}"
    else:
        what = f"ρ {schedule.rho_bottom:.2f}→{schedule.rho_top:.2f}"
        what += "" if schedule.shape == "linear" else f" {schedule.shape}"
    return f"{role} {what} (trial {trial.number})"


def _labelled_trials(trials: Sequence[optuna.trial.FrozenTrial], best: int | None
                     ) -> list[tuple[str, optuna.trial.FrozenTrial]]:
    """The trials whose grids the page shows, labelled: the tuned one first, then ρ = 1 and
    the known points. A known point that is the tuned schedule is shown once, as
    ``tuned = <its label>``, not twice as if the two differed."""
    by_number = {t.number: t for t in trials}
    known = [t for t in trials if role_of(t) in ("baseline", "paper", "freeu")]
    if best is None or best not in by_number:
        return [(_known_label(t), t) for t in known]
    tuned = by_number[best]
    schedule = schedule_from_params(tuned.params)
    same = [t for t in known
            if t.number == best or schedule_from_params(t.params) == schedule]
    label = "tuned" + "".join(f" = {_known_label(t)}" for t in same[:1])
    return [(label, tuned), *((_known_label(t), t) for t in known if t not in same)]


def _page(study: optuna.Study, summary: StudySummary, folder: Path | None) -> StudyPage:
    grids: dict[str, bytes] = {}
    for label, trial in _labelled_trials(study.get_trials(deepcopy=False), summary.best_trial):
        data = _grid_bytes(folder, trial)
        if data is not None and label not in grids:
            grids[label] = data
    attrs = study.user_attrs
    grid = attrs.get(GRID_ATTR) or {}
    return StudyPage(summary=summary, grids=grids, grid_seed=grid.get("seed"),
                     num_skips=attrs.get(NUM_SKIPS_ATTR))


def front_series(report: FrontReport) -> list[FrontSeries]:
    """A report's points as chart series: one per sampler and kind (tuned, ρ = 1)."""
    return [
        FrontSeries(sampler, kind, tuple((r.nfe, r.value) for r in records
                                         if r.sampler == sampler))
        for kind, records in (("tuned", report.tuned), ("baseline", report.baseline))
        for sampler in report.samplers
        if any(r.sampler == sampler for r in records)
    ]


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
        if group is not None and not pages:
            groups = sorted({config.group for _study, config in stored_studies(storage)})
            raise ConfigurationError(
                f"no skiptune study of group {group!r} in {source}; its groups: "
                f"{', '.join(groups) or 'none'}; pass one of them, or leave group out",
                field="group",
            )
        reports = front_report(storage, group=group)
    pages.sort(key=lambda p: (p.summary.group, p.summary.sampler, p.summary.nfe))
    fronts = [(f"{r.metric} at {r.measured_on}", front_svg(front_series(r), metric=r.metric))
              for r in reports]
    text = render_report(pages, fronts, source=source)
    return write_atomically(target, text.encode("utf-8"), suffixes=(".html", ".htm"))
