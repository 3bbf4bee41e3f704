"""The command line: parse, call the library, render. No torch or Optuna logic lives here.

``skiptune`` has the subcommands search, best, front, export, studies, plot and sample;
``skiptune-search`` is the search command alone. Every :class:`SkiptuneError` becomes one
line on stderr (``error: ...``) and exit code 1; usage errors exit 2, as typer does.
"""

from __future__ import annotations

# isort: off
import skiptune._interrupt  # first: installs the Ctrl-C handler before the slow imports
# isort: on
import codecs
import contextlib
import errno
import io
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from skiptune._install import install_hint
from skiptune._parsing import parse_list, parse_name, parse_number, parse_whole
from skiptune._secrets import mask_secrets
from skiptune.errors import ConfigurationError, SkiptuneError
from skiptune.sampling.solvers import DEFAULT_SAMPLER, SAMPLERS

__all__ = ["app", "main", "search_app", "search_main"]

T = TypeVar("T")

_EPILOG_SEARCH = """\
Examples:

  skiptune-search --model ckpt.pt --nfe 9

  skiptune-search --model ckpt.pt --nfe 5 --nfe 9 --nfe 15 --sampler unipc --trials 60

  skiptune-search --model ckpt.pt --nfe 9 --rho-top 1.0 --db postgresql+psycopg://me@db/skiptune

  skiptune-search --model ./sd15 --nfe 15 --space rho+freeu --embeddings prompts.safetensors
  --features inception --ref ./coco-512

Rerun the same command after a crash or Ctrl-C to resume; a finished study prints its result.
"""

_CLASS_LABELS_HELP = (
    "Class-conditional models: the classes to sample, e.g. 3 or 1,5,7; each sample's class "
    "is drawn from its seed among these (default: among all classes)."
)

_OFFLINE_HELP = (
    "Download nothing (also SKIPTUNE_OFFLINE=1 or HF_HUB_OFFLINE=1): a model, Inception file "
    "or reference that is not in skiptune's cache is one error naming its URL and where to "
    "put it."
)

_TRUST_PICKLE_HELP = (
    "Also load a checkpoint that holds pickled Python objects. DANGEROUS: unpickling runs "
    "whatever code the file carries, with your permissions; pass it only for files from a "
    "source you trust. Without it only tensors and plain data are read."
)


# Recent typer vendors its own click; its exception classes are reached from the ones it
# exports, which works with a vendored click and with the real one alike.
_UsageError: Any = typer.BadParameter.__bases__[0]
_ClickException: Any = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


class _OneLineErrors:
    """Usage errors in one line on stderr, like every other error; exit code 2 as click's.

    Click prints a usage line, a hint and the error over four lines; scripts grep one line
    starting with ``error:``, and the line itself says where the help is.
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except _UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":   # bare `skiptune`: the help, as is
                e.show()
                raise SystemExit(e.exit_code) from None
            ctx = getattr(e, "ctx", None)
            prog = ctx.command_path if ctx is not None else "skiptune"
            message = e.format_message().rstrip(".")
            line = f"{message[:1].lower()}{message[1:]}; see '{prog} --help'"
            raise SystemExit(_echo_error(line, code=e.exit_code)) from None
        except _ClickException as e:
            raise SystemExit(_echo_error(e.format_message(), code=e.exit_code)) from None
        except typer.Abort:
            raise SystemExit(_echo_error("aborted", code=1)) from None
        # In this mode click returns the exit code of a typer.Exit, or the command's None.
        raise SystemExit(code if isinstance(code, int) else 0)


_TYPER_TYPE = re.compile(r"<(?:list\[)?(\w+)(?: range)?\]?>")


def _metavar_of(shown: str) -> str:
    """An option's value as a person writes it, from how typer shows its type: ``<int
    range>`` and ``<list[int]>`` read ``N``, a float ``X``, text ``TEXT``, and the choices
    ``<a|b>`` read ``[a|b]``."""
    plain = _TYPER_TYPE.fullmatch(shown)
    if plain is None:
        return f"[{shown.strip('<>')}]" if "|" in shown else shown
    return {"int": "N", "float": "X"}.get(plain.group(1), "TEXT")


def _plain_metavars(command: Any) -> Any:
    """``command`` with a plain metavar on each valued option that names none (typer's own
    read ``<int range>`` or ``<list[int]>``); an option's explicit metavar (PATH, N,N) stays."""
    for param in command.params:
        if (param.param_type_name == "option" and not getattr(param, "is_flag", False)
                and param.metavar is None):
            param.metavar = _metavar_of(param.display_type(None))
    return command


class _OneLineCommand(_OneLineErrors, TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_metavars(self)


class _OneLineGroup(_OneLineErrors, TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            _plain_metavars(command)


_SAMPLER_NAMES = ", ".join(SAMPLERS)
_SAMPLER_DEFAULT = (f"[default: the model's own (consistency for a distilled model), else "
                    f"{DEFAULT_SAMPLER}]")

app = typer.Typer(
    help="Automatic Skip-Tuning: search the skip-connection scales ρ that make a diffusion "
    "U-Net sample well in few steps, and read the results back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=_OneLineGroup,
)
search_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                         rich_markup_mode=None)


def _print_version(value: bool) -> None:
    if value:
        from skiptune._version import skiptune_version

        typer.echo(f"skiptune {skiptune_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print skiptune's version and exit.")] = False,
) -> None:
    # The group's own options; its help is the Typer's.
    pass


class _Console(Console):
    """A rich console that spells the symbols its output cannot encode (ρ as ``rho``, see
    ``_ASCII_FALLBACK``) before it lays text out, so that table columns are measured on the
    text that is printed."""

    def render_str(self, text: str, **options: Any) -> Text:
        return super().render_str(_spelled_for(self.file, text), **options)


_stderr = _Console(stderr=True, highlight=False)
_stdout = _Console(highlight=False)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="PATH|URL", envvar="SKIPTUNE_DB",
        help="Study database: a path (SQLite) or a SQLAlchemy URL such as "
        "postgresql+psycopg://user@host/db. Default ./skiptune.db; env SKIPTUNE_DB.",
        show_default=False,
    ),
]
GroupOption = Annotated[
    str | None,
    typer.Option("--study", metavar="NAME",
                 help="Study group (default: named after the model file)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout for scripts.")]


# -- error handling at the edge --------------------------------------------------------------


_said: list[str] = []          # the error line printed, so that the edge never adds a second


def _echo_error(message: str, *, code: int) -> int:
    # One line, no markup, no wrapping: scripts grep it and humans read it; no secret in it
    # (a usage error quotes the value given, which may be a URL with a token).
    line = f"error: {' '.join(mask_secrets(message).split())}"
    _said.append(line)
    typer.echo(line, err=True)
    return code


def _fail(message: str, *, code: int = 1) -> typer.Exit:
    return typer.Exit(_echo_error(message, code=code))


def _warn(event: Any) -> None:
    """One stderr line for a search event that needs the user's attention, else nothing."""
    from skiptune import tuner

    if isinstance(event, tuner.BatchSizeReduced):
        typer.echo(_batch_warning(event), err=True)
    elif isinstance(event, tuner.Note):
        typer.echo(f"note: {mask_secrets(event.message)}", err=True)
    elif isinstance(event, tuner.WorkerLost):
        typer.echo(_lost_warning(event), err=True)
    elif isinstance(event, tuner.ReferenceSampled) and (event.done == 0 or event.cached):
        typer.echo(_reference_line(event), err=True)


def _reference_line(event: Any) -> str:
    """The line that says a self-reference is sampled now, or that its cached one is used."""
    if event.cached:
        return (f"reference {event.source}: reusing its statistics ({event.total} samples) "
                "cached in the database; nothing to sample")
    return (f"computing reference {event.source} once: {event.total} samples of the model at "
            "ρ = 1, cached in the database for every study and for resuming; a time estimate "
            "follows its first batch")


def _time_left(done: int, total: int, seconds: float) -> str:
    """``about 23 min left`` from ``done`` of ``total`` taking ``seconds`` so far."""
    if done <= 0:
        return "time left unknown"
    left = seconds / done * (total - done)
    return f"about {left / 60:.0f} min left" if left >= 90 else f"about {left:.0f} s left"


def _reference_progress_line(event: Any, seconds: float) -> str:
    """``reference self:heun:35:1024: 8/1024 samples (12 s), about 25 min left``."""
    if event.done >= event.total:
        return f"reference {event.source}: {event.total} samples done ({seconds:.0f} s), cached"
    return (f"reference {event.source}: {event.done}/{event.total} samples ({seconds:.0f} s), "
            f"{_time_left(event.done, event.total, seconds)}")


def _lost_warning(event: Any) -> str:
    return (f"warning: worker {event.worker} died (exit code {event.exit_code}); the other "
            "workers finished every study to its total, so the results stand")


def _batch_warning(event: Any) -> str:
    return (
        f"warning: out of memory with {event.failed} images per batch "
        f"({' '.join(event.reason.split())}); continuing with {event.batch_size} per batch: "
        f"the same results (each image has its own seed), only slower; --batch-size "
        f"{event.batch_size} starts there next time"
    )


# The library's errors name the configuration fields and keyword arguments a Python caller
# passes (error.fields); the command line names its own flags for them.
_FLAGS = {
    "allow_large_rungs": "--allow-large-rungs",
    "allow_other_budget": "--allow-other-budget",
    "allow_other_weights": "--allow-other-weights",
    "class_labels": "--class-labels",
    "db": "--db",
    "device": "--device",
    "dtype": "--dtype",
    "embeddings": "--embeddings",
    "exported": "--from",
    "grace_period": "--grace",
    "group": "--study",
    "guidance_scale": "--guidance-scale",
    "heartbeat_interval": "--heartbeat",
    "host": "--host",
    "model": "--model",
    "nfe": "--nfe",
    "num_samples": "-n",
    "objective.features": "--features",
    "objective.metric": "--metric",
    "objective.reference": "--ref",
    "objective.rungs": "--rungs",
    "one_step_sigma": "--one-step-sigma",
    "parallel_candidates": "--parallel-candidates",
    "port": "--port",
    "prompts": "--prompts",
    "revision": "--revision",
    "sampler": "--sampler",
    "schedule": "--rho-bottom",
    "seed": "--seed",
    "space.kind": "--space",
    "space.shapes": "--shapes",
    "space.sigma_window": "--sigma-window",
    "trust_pickle": "--trust-pickle",
    "validation.artifacts": "--artifacts",
    "validation.max_blocks": "--max-blocks",
    "validation.num_samples": "--validation-n",
    "validation.top_k": "--validate-top",
    "variant": "--variant",
    "workers": "--workers",
}


def _spelled_as_flags(text: str, fields: Sequence[str]) -> str:
    """``text`` with each field of ``fields`` that has a flag written as that flag.

    A field is a word of its own (not inside a path such as skiptune.db, a quote or a longer
    name), and ``name=True`` (a boolean keyword) becomes the flag alone. A dotted or
    snake_case field is replaced wherever it stands; a one-word field (``db``, ``device``)
    is also an English word, so only its last occurrence, the one that says what to pass.
    """
    for field in fields:
        if field not in _FLAGS:
            continue
        pattern = rf"(?<![\w.'\"/=-]){re.escape(field)}(?:=True)?(?![\w'\"/=-]|\.\w)"
        spans = [m.span() for m in re.finditer(pattern, text)]
        if "." not in field and "_" not in field:
            spans = spans[-1:]
        for start, end in reversed(spans):
            text = text[:start] + _FLAGS[field] + text[end:]
    return text


def _message(error: SkiptuneError) -> str:
    """The error's line, with the configuration fields it names spelled as this CLI's flags."""
    return _spelled_as_flags(str(error), error.fields)


def _call(fn: Callable[[], T]) -> T:
    """Run one library call; a SkiptuneError becomes one line on stderr and exit code 1."""
    try:
        return fn()
    except SkiptuneError as e:
        raise _fail(_message(e)) from None


def _parsed(parse: Callable[[str], T], text: str | None, *, name: str) -> T | None:
    """``text`` read by one of skiptune's parsers (ASCII digits, no empty item); a mistake is
    a usage error naming the option ``name``. None stays None (the option was not set)."""
    if text is None:
        return None
    try:
        return parse(text)
    except ConfigurationError as e:
        raise typer.BadParameter(str(e), param_hint=name) from None


def _floats(text: str | None, *, name: str, count: int | None = None) -> tuple[float, ...] | None:
    example = ",".join(["0.3", "1.2", "0.9", "0.2"][: count or 2])
    return _parsed(lambda t: parse_list(t, parse_number, what="numbers", example=example,
                                        count=count), text, name=name)


def _ints(text: str | None, *, name: str, example: str = "64,256") -> tuple[int, ...] | None:
    return _parsed(lambda t: parse_list(t, parse_whole, what="whole numbers", example=example),
                   text, name=name)


def _names(text: str | None, *, name: str) -> tuple[str, ...] | None:
    return _parsed(lambda t: parse_list(t, parse_name, what="names", example="linear,power"),
                   text, name=name)


def _set(**options: Any) -> dict[str, Any]:
    """Only the options the user set, so that the library's defaults stay the single source."""
    return {key: value for key, value in options.items() if value is not None}


def _schedule_text(schedule: dict[str, Any] | None) -> str:
    if not schedule:
        return "—"
    text = f"{schedule['rho_bottom']:.3f} → {schedule['rho_top']:.3f} {schedule['shape']}"
    if schedule["shape"] == "power":
        text += f" γ={schedule['gamma']:.2f}"
    freeu = schedule.get("freeu")
    if freeu:
        text += (f" · FreeU b {freeu['b1']:.2f}/{freeu['b2']:.2f} "
                 f"s {freeu['s1']:.2f}/{freeu['s2']:.2f}")
    if schedule.get("sigma_lo") is not None:     # ρ acts only there, 1 outside
        text += f" · σ window {schedule['sigma_lo']:.3g}–{schedule['sigma_hi']:.3g}"
    return text + _grid_text(schedule)


def _compact_schedule(schedule: dict[str, Any] | None) -> str:
    """The schedule for a table cell: ``0.55→1.00``, then ``γ0.70`` for the power shape or
    ``cos`` for the cosine one, FreeU's ``b1/b2 s1/s2`` and the σ window where the schedule
    has them: short enough for one line at 80 columns, where the full form wrapped."""
    if not schedule:
        return "—"
    text = f"{schedule['rho_bottom']:.2f}→{schedule['rho_top']:.2f}"
    if schedule["shape"] == "power":
        text += f" γ{schedule['gamma']:.2f}"
    elif schedule["shape"] == "cosine":
        text += " cos"
    freeu = schedule.get("freeu")
    if freeu:       # b1/b2 then s1/s2: the whole intervention, still one short cell
        text += (f" b{freeu['b1']:.2f}/{freeu['b2']:.2f}"
                 f" s{freeu['s1']:.2f}/{freeu['s2']:.2f}")
    if schedule.get("sigma_lo") is not None:
        text += f" σ{schedule['sigma_lo']:.3g}–{schedule['sigma_hi']:.3g}"
    return text + _grid_text(schedule)


def _grid_text(schedule: dict[str, Any]) -> str:
    """A searched σ grid as `` · σ 0.002…80 ^7.0`` (ends, then exponent); none: ``""``."""
    grid = schedule.get("steps")
    if not grid:
        return ""
    return (f" · σ {grid['sigma_min']:.3g}…{grid['sigma_max']:.3g} "
            f"^{grid['schedule_exponent']:.1f}")


def _table(title: str, columns: Sequence[str], *, numeric: Sequence[str] = (),
           keep_whole: Sequence[str] = ()) -> Table:
    """A result table that reads at 80 columns, piped or not: no vertical rules (two
    characters per column), and the ``keep_whole`` columns (ρ) never wrapped; the others
    fold when a name is long."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in columns:
        table.add_column(column, justify="right" if column in numeric else "left",
                         overflow="fold", no_wrap=column in keep_whole)
    return table


def _known_text(known: dict[str, float]) -> str:
    return ", ".join(f"{role} {value:.4g}" for role, value in sorted(known.items())) or "—"


# Conditioning of text-to-image U-Nets, shared by search and sample.
PromptsOption = Annotated[str | None, typer.Option(
    "--prompts", metavar="PATH", help="Text file, one prompt a line (sample j takes prompt "
    "j mod P); needs transformers: "
    f"{install_hint('sd')}.")]
EmbeddingsOption = Annotated[str | None, typer.Option(
    "--embeddings", metavar="PATH", help=".safetensors with prompt_embeds [P, L, D] (SDXL: also "
    "pooled_prompt_embeds; optional negative_prompt_embeds).")]
NegativeOption = Annotated[str | None, typer.Option(
    "--negative-prompt", help="Negative prompt for classifier-free guidance.")]
GuidanceOption = Annotated[float | None, typer.Option(
    "--guidance-scale", help="Classifier-free guidance scale; ≤ 1 turns it off (an LCM takes "
    "it as an input). [default: 7.5 for SD 1.x/2.x, 5 for SDXL, 8.5 for an LCM, 1 for "
    "LCM-LoRA, 0 for SD-/SDXL-Turbo]")]
# Which weights of a model named by hub id (org/name) or of a diffusers folder.
RevisionOption = Annotated[str | None, typer.Option(
    metavar="REV", help="Branch, tag or commit of a Hugging Face hub id. [default: main]")]
VariantOption = Annotated[str | None, typer.Option(
    help="Weights variant of a diffusers model, e.g. fp16 (*.fp16.safetensors).")]
DtypeOption = Annotated[Literal["float16", "bfloat16", "float32"] | None, typer.Option(
    help="What the net computes in. [default: float16 for Stable Diffusion on CUDA, else "
    "float32]")]
# A one-step generator kept as an EDM snapshot (SiD, Diff-Instruct): nothing in it says so.
OneStepSigmaOption = Annotated[float | None, typer.Option(
    "--one-step-sigma", metavar="SIGMA", help="Treat an EDM snapshot as a one-step generator "
    "started at this σ (SiD: 2.5): the image is D(σ·z; σ); samples with the consistency "
    "sampler. [default: a diffusion model]")]


def _conditioning(prompts: str | None, embeddings: str | None, negative_prompt: str | None,
                  guidance_scale: float | None, class_labels: str | None) -> dict[str, Any] | None:
    """The conditioning choices the user set (prompts for SD, class labels for EDM), or None."""
    labels = _ints(class_labels, name="--class-labels", example="1,5,7")
    return _set(prompts=prompts, embeddings=embeddings, negative_prompt=negative_prompt,
                guidance_scale=guidance_scale, class_labels=labels) or None


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


# -- downloads -------------------------------------------------------------------------------


class _DownloadBar:
    """Draws the library's download progress as a rich bar on stderr, only on a terminal."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("downloading {task.description}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=True,
        )
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, report: Any) -> None:
        if report.url not in self._tasks:
            if not self._tasks:
                self._progress.start()
            self._tasks[report.url] = self._progress.add_task(report.name, total=report.total)
        self._progress.update(self._tasks[report.url], completed=report.done,
                              total=report.total)
        if report.finished:
            self._progress.remove_task(self._tasks.pop(report.url))
            if not self._tasks:
                self._progress.stop()

    def close(self) -> None:
        if self._tasks:              # a download that failed or was interrupted
            self._tasks.clear()
            self._progress.stop()


@contextlib.contextmanager
def _fetching(offline: bool, *, bar: bool = True) -> Iterator[None]:
    """What the commands that may download run within: offline mode, and a progress bar
    (only on a terminal: a log file or pipe would get its redrawn lines)."""
    from skiptune import downloads

    drawn = _DownloadBar(_stderr) if bar and sys.stderr.isatty() else None
    try:
        with downloads.offline_mode(offline, why="--offline"), downloads.report_progress(drawn):
            yield
    finally:
        if drawn is not None:
            drawn.close()


# -- search ----------------------------------------------------------------------------------


class _SearchPhase:
    """What a search is doing, as its events tell: what a Ctrl-C interrupted, and how long
    the reference has been sampled."""

    def __init__(self) -> None:
        self.running = 0                     # trials started and not yet finished
        self.trials_ran = False
        self.reference: Any = None           # the last report of a reference being sampled
        self._reference_started = time.monotonic()

    def see(self, event: Any) -> None:
        from skiptune import tuner

        if isinstance(event, tuner.ReferenceSampled):
            if event.done == 0:
                self._reference_started = time.monotonic()
            self.reference = None if event.cached or event.done >= event.total else event
        elif isinstance(event, tuner.TrialStarted):
            self.running += 1
            self.trials_ran = True
        elif isinstance(event, tuner.TrialFinished):
            self.running = max(0, self.running - 1)

    def reference_seconds(self) -> float:
        return time.monotonic() - self._reference_started

    def interrupted(self) -> str:
        """The line for a Ctrl-C (or SIGTERM) now: it names only what was running."""
        rerun = "rerun the same command to resume (finished trials are kept)"
        if self.running:
            return f"interrupted: the running trial was marked failed and re-queued; {rerun}"
        if self.reference is not None:
            return (f"interrupted while sampling the reference {self.reference.source} "
                    f"({self.reference.done}/{self.reference.total} samples): no trial ran, "
                    "and the reference is stored only once complete; rerun the same command "
                    "to sample it again")
        if not self.trials_ran:
            return ("interrupted before any trial ran (loading the model or preparing the "
                    "studies): nothing was measured; rerun the same command to start")
        return f"interrupted between trials: no trial was running; {rerun}"


class _Watched:
    """``render``, with ``phase`` told of each event first."""

    def __init__(self, phase: _SearchPhase, render: Callable[[Any], None]) -> None:
        self.phase = phase
        self.render = render

    def __call__(self, event: Any) -> None:
        self.phase.see(event)
        self.render(event)


class _SearchLog:
    """Renders search events as plain lines, one per trial and per phase, for a log file or
    a pipe (nohup, Slurm, ``> log``): a progress bar there shows nothing until it stops."""

    def __init__(self, console: Console, phase: _SearchPhase) -> None:
        self._console = console
        self._phase = phase
        self._labels: dict[str, str] = {}
        self._tenths: dict[str, int] = {}    # the reference's last tenth reported

    def __enter__(self) -> _SearchLog:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __call__(self, event: Any) -> None:
        line = self._text(event)
        if line:
            self._console.print(line, soft_wrap=True, markup=False)

    def _text(self, event: Any) -> str | None:
        from skiptune import tuner

        if isinstance(event, tuner.BatchSizeReduced):
            return _batch_warning(event)
        if isinstance(event, tuner.WorkerLost):
            return _lost_warning(event)
        if isinstance(event, tuner.Note):
            return f"note: {event.message}"
        if isinstance(event, tuner.ReferenceSampled):
            return self._reference(event)
        if isinstance(event, tuner.StudyStarted):
            label = self._labels[event.study_name] = f"{event.sampler} {event.nfe} NFE"
            return (f"{label}: {'resumed' if event.resumed else 'started'} at "
                    f"{event.finished}/{event.trials_total} trials")
        return self._study_text(event)

    def _reference(self, event: Any) -> str | None:
        if event.cached or event.done == 0:
            return _reference_line(event)
        tenth = event.done * 10 // event.total
        first = event.source not in self._tenths          # its first batch: the estimate
        if not first and tenth == self._tenths[event.source] and event.done < event.total:
            return None
        self._tenths[event.source] = tenth
        return _reference_progress_line(event, self._phase.reference_seconds())

    def _study_text(self, event: Any) -> str | None:
        from skiptune import tuner

        label = self._labels.get(getattr(event, "study_name", ""), "")
        if isinstance(event, tuner.TrialFinished):
            reason = f" ({event.reason})" if event.reason else ""
            return (f"{label}: trial {event.finished}/{event.trials_total} #{event.trial_number} "
                    f"{event.state} {_number(event.value)}{reason} ρ "
                    f"{_compact_schedule(event.schedule)} in {event.seconds:.0f} s · best "
                    f"{_number(event.best_value)} vs ρ = 1 {_number(event.baseline_value)}")
        if isinstance(event, tuner.CandidateValidated):
            return (f"{label}: raced #{event.trial_number} ({event.role}) on fresh seed block "
                    f"{event.block + 1} (N={event.num_samples}): {_number(event.value)} "
                    f"(search {event.search_value:.4g})")
        if isinstance(event, tuner.Waiting):
            return f"{label}: waiting for {event.running} running trial(s) to end or go stale"
        if isinstance(event, tuner.StudyDone):
            return f"{label}: done"
        return None             # a trial's start and rungs: its one line comes when it ends


class _SearchProgress:
    """Renders search events on a terminal: one progress bar per study, best so far against
    the baseline."""

    def __init__(self, console: Console) -> None:
        columns = (TextColumn("{task.fields[study]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                   TimeRemainingColumn())
        self._progress = Progress(*columns, console=console, transient=False)
        self._tasks: dict[str, TaskID] = {}
        self._best: dict[str, str] = {}
        self._started = False

    def __enter__(self) -> _SearchProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._progress.stop()

    def _start(self) -> None:
        # Started at the first event: a mistake found while loading then prints its one
        # error line alone, without an empty progress display around it.
        if not self._started:
            self._progress.start()
            self._started = True

    def _task(self, study: str, label: str | None = None, total: int = 0, done: int = 0
              ) -> TaskID:
        if study not in self._tasks:
            label = label or study
            self._tasks[study] = self._progress.add_task(
                study, total=total, completed=done, study=label, status=""
            )
        return self._tasks[study]

    def __call__(self, event: Any) -> None:
        from skiptune import tuner

        self._start()
        if isinstance(event, tuner.BatchSizeReduced | tuner.WorkerLost):
            # soft_wrap: one line, however narrow the console.
            line = (_batch_warning(event) if isinstance(event, tuner.BatchSizeReduced)
                    else _lost_warning(event))
            self._progress.console.print(line, soft_wrap=True, markup=False)
        elif isinstance(event, tuner.ReferenceSampled):
            if event.done == 0 or event.cached:
                self._progress.console.print(_reference_line(event), soft_wrap=True,
                                             markup=False)
            if event.cached:
                return
            self._progress.update(self._task(event.source), total=event.total,
                                  completed=event.done, status="reference (ρ = 1)")
        elif isinstance(event, tuner.Note):
            self._progress.console.print(f"note: {mask_secrets(event.message)}", soft_wrap=True,
                                         markup=False)
        elif isinstance(event, tuner.StudyStarted):
            # Several samplers share a budget: the row names both.
            task = self._task(event.study_name, f"{event.sampler} {event.nfe} NFE",
                              event.trials_total, event.finished)
            self._progress.update(task, total=event.trials_total, completed=event.finished,
                                  status="resumed" if event.resumed else "started")
        elif isinstance(event, tuner.TrialStarted):
            self._progress.update(
                self._task(event.study_name),
                status=f"trial {event.finished + 1}/{event.trials_total} "
                f"ρ {_schedule_text(event.schedule)} ({event.role})"
                f"{self._best.get(event.study_name, '')}",
            )
        elif isinstance(event, tuner.RungDone):
            self._progress.update(
                self._task(event.study_name),
                status=f"trial #{event.trial_number} rung {event.rung_index + 1} "
                f"N={event.num_samples}: {event.value:.4g}"
                f"{self._best.get(event.study_name, '')}",
            )
        elif isinstance(event, tuner.TrialFinished):
            best = f" · best {_number(event.best_value)} vs ρ=1 {_number(event.baseline_value)}"
            self._best[event.study_name] = best
            self._progress.update(
                self._task(event.study_name), completed=event.finished,
                status=f"#{event.trial_number} {event.state} {_number(event.value)}{best}",
            )
        elif isinstance(event, tuner.CandidateValidated):
            self._progress.update(
                self._task(event.study_name),
                status=f"raced #{event.trial_number} ({event.role}) on fresh seed block "
                f"{event.block + 1} (N={event.num_samples}): {_number(event.value)} (search "
                f"{event.search_value:.4g})",
            )
        elif isinstance(event, tuner.Waiting):
            self._progress.update(
                self._task(event.study_name),
                status=f"waiting for {event.running} running trial(s) to end or go stale",
            )


def _summary_table(summaries: list[Any], title: str) -> Table:
    from skiptune import tuner
    from skiptune.tuner.results import measured_on, percent

    table = _table(title, ("group", "sampler", "NFE", "best ρ", "proxy", "ρ = 1", "gain", "N",
                           "trials"),
                   numeric=("NFE", "proxy", "ρ = 1", "gain", "N"), keep_whole=("best ρ", "gain"))
    # Known points (the paper's ρ, the model family's FreeU values) under the table, so that
    # it says how far the search beat them without widening every row; they are the search's
    # own values, measured on its N and seeds, not the validation's.
    captions = []
    for search_n, seed in sorted({(s.num_samples, s.seed) for s in summaries}):
        known = [f"{_study_label(s)}: {_known_text(s.known_values)}" for s in summaries
                 if s.known_values and (s.num_samples, s.seed) == (search_n, seed)]
        if known:
            captions.append(f"known points (the search's {measured_on(search_n, seed)}): "
                            + "; ".join(known))
    # The interval and the search's own value go under the table, one line a study, so that
    # the table still reads at 80 columns.
    captions += [_validation_text(s) for s in summaries if s.validated]
    # Where several samplers searched one budget, ★ marks the best (sampler, steps, ρ).
    budgets = [(s.group, s.nfe) for s in summaries]
    shared = [s for s in summaries if budgets.count((s.group, s.nfe)) > 1]
    best = set(tuner.best_per_budget(shared)) if shared else set()
    captions += ["★ the best sampler and schedule of its budget"] if best else []
    if captions:
        table.caption = "\n".join(captions)
    for s in summaries:
        gain = s.improvement
        table.add_row(
            s.group, s.sampler + (" ★" if s.study_name in best else ""), str(s.nfe),
            _compact_schedule(None if s.best_schedule is None else s.best_schedule.to_dict()),
            _number(s.best_value), _number(s.baseline_value),
            "—" if gain is None else percent(gain),
            str(s.measured_num_samples),
            f"{s.finished}/{s.trials_total}",
        )
    return table


def _study_label(summary: Any) -> str:
    """``demo_unet heun 9 NFE``: a study as a caption line names it."""
    return f"{summary.group} {summary.sampler} {summary.nfe} NFE"


def _validation_text(summary: Any) -> str:
    """One caption line: how a study's values were validated, and the gain's interval."""
    from skiptune.tuner.results import gain_text, measured_on

    gain = ("" if summary.improvement is None else ", " + gain_text(
        summary.improvement, summary.gain_low, summary.gain_high,
        level=summary.validation_level))
    validated = measured_on(summary.measured_num_samples, summary.measured_seed)
    return (f"✓ {_study_label(summary)}: validated at {validated}{gain}; "
            f"{_raced_text(summary)}; the search's own best "
            f"{_number(summary.search_best_value)} at "
            f"{measured_on(summary.num_samples, summary.seed)}")


def _raced_text(summary: Any) -> str:
    """Which images decided a validated study's choice."""
    blocks = summary.validation_blocks or 1
    return (f"chosen on {blocks} block(s) of {summary.validation_num_samples} fresh seeds "
            f"({blocks * summary.validation_num_samples} images each; {summary.race_images} "
            "raced in all)")


def search_command(
    model: Annotated[str, typer.Option("--model", "-m", metavar="PATH",
                                       help="Checkpoint (.pt), NVlabs EDM "
                                       "network-snapshot .pkl (either also as an http(s) URL; "
                                       "#sha256=HEX pins it), diffusers UNet2DModel or "
                                       "pipeline folder, Hugging Face hub id org/name, or "
                                       "module:attr adapter.")],
    nfe: Annotated[list[int], typer.Option("--nfe", min=1, help="Step budget in denoiser "
                                           "calls; repeat for several (one study each).")],
    revision: RevisionOption = None,
    variant: VariantOption = None,
    dtype: DtypeOption = None,
    one_step_sigma: OneStepSigmaOption = None,
    sampler: Annotated[list[str] | None, typer.Option(
        metavar="NAME", help=f"Sampler: {_SAMPLER_NAMES}; repeat for several (one study each "
        f"per budget). {_SAMPLER_DEFAULT}")] = None,
    trials: Annotated[int | None, typer.Option(min=1, help="Total finished trials each study "
                                               "should reach. [default: 10]")] = None,
    db: DbOption = None,
    study: GroupOption = None,
    metric: Annotated[str | None, typer.Option(
        metavar="NAME", help="Proxy metric, a name in skiptune.objectives.METRICS: fd "
        "(Fréchet distance) or kid (kernel distance). [default: fd]")] = None,
    features: Annotated[str | None, typer.Option(metavar="NAME|PATH",
                                                 help="Feature network: digits, inception, or "
                                                 "a TorchScript file.")] = None,
    ref: Annotated[str | None, typer.Option("--ref", metavar="PATH|NAME",
                                            help="Reference images: a folder, an .npz "
                                            "of statistics (or its http(s) URL), "
                                            "cleanfid:NAME/SPLIT/RES, or self "
                                            "(the model's own samples at ρ = 1: heun at 35 NFE "
                                            "up to 32 px, 79 above; "
                                            "self:SAMPLER:NFE[:N] to choose). Default: the "
                                            "model's own, if it carries one.")] = None,
    rungs: Annotated[str | None, typer.Option(metavar="N,N",
                                              help="Sample counts N of the fidelity rungs, "
                                              "e.g. 64,256. [default: 16,64]")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Noise seed of sample 0 (and the "
                                             "optimizer's seed). [default: 0]")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Images sampled at once.")] = None,
    optimizer: Annotated[Literal["tpe", "gp", "cmaes", "random", "qmc", "grid"] | None,
                         typer.Option(help="Optimizer. [default: tpe]")] = None,
    rho_bottom_range: Annotated[str | None, typer.Option(metavar="LOW,HIGH",
                                                         help="low,high of ρ_bottom, e.g. "
                                                         "0.3,1.2.")] = None,
    rho_top: Annotated[float | None, typer.Option(min=0.0, help="Fix ρ_top, e.g. 1.0 (the "
                                                  "paper's usual choice).")] = None,
    rho_top_range: Annotated[str | None, typer.Option(metavar="LOW,HIGH",
                                                      help="low,high of ρ_top, e.g. "
                                                      "0.3,1.2.")] = None,
    shapes: Annotated[str | None, typer.Option(metavar="NAME,NAME",
                                               help="Interpolation shapes to try, e.g. "
                                               "linear,power,cosine.")] = None,
    space: Annotated[Literal["rho", "freeu", "rho+freeu", "steps", "rho+steps", "freeu+steps",
                             "rho+freeu+steps"] | None, typer.Option(
        help="What to search: the skip schedule ρ, FreeU's b1, b2, s1, s2 (ρ = 1), the σ grid "
        "of the steps (exponent and ends), or several. [default: rho]")] = None,
    freeu_b_range: Annotated[str | None, typer.Option(metavar="LOW,HIGH",
                                                      help="low,high of FreeU's b1 and b2. "
                                                      "[default: 0.8,1.8]")] = None,
    freeu_s_range: Annotated[str | None, typer.Option(metavar="LOW,HIGH",
                                                      help="low,high of FreeU's s1 and s2. "
                                                      "A factor 0 turns FreeU off, as in "
                                                      "diffusers. [default: 0.05,1.2]")] = None,
    sigma_window: Annotated[str | None, typer.Option(
        metavar="LOW,HIGH", help="low,high σ range in which to search a window [σ_lo, "
        "σ_hi]: ρ acts only there, 1 outside. [default: ρ at every σ]")] = None,
    prompts: PromptsOption = None,
    embeddings: EmbeddingsOption = None,
    negative_prompt: NegativeOption = None,
    guidance_scale: GuidanceOption = None,
    no_pruning: Annotated[bool, typer.Option("--no-pruning", help="Measure every trial at "
                                             "every rung.")] = False,
    device: Annotated[str | None, typer.Option(metavar="DEVICE", help="auto, cpu, cuda or cuda:N. "
                                               "[default: auto]")] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help=_TRUST_PICKLE_HELP)]
    = False,
    class_labels: Annotated[str | None, typer.Option(metavar="N,N",
                                                     help=_CLASS_LABELS_HELP)] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes on this machine "
                                                "(one per GPU); PostgreSQL only.")] = None,
    parallel_candidates: Annotated[int | None, typer.Option(
        "--parallel-candidates", help="Trials asked at once and sampled in one batch "
        "(per-sample ρ). [default: 1]")] = None,
    heartbeat: Annotated[int | None, typer.Option(min=1, help="Seconds between a running "
                                                  "trial's heartbeats. [default: 10]")] = None,
    grace: Annotated[int | None, typer.Option(min=1, help="Seconds without a heartbeat before "
                                              "a trial is failed and re-queued. [default: 30]")]
    = None,
    allow_large_rungs: Annotated[bool, typer.Option(
        "--allow-large-rungs", help="Accept a rung above 50,000 samples.")] = False,
    validate_top: Annotated[int | None, typer.Option(
        "--validate-top", help="New challengers per race and race number: race m compares "
        "the K·m best schedules not yet raced with the incumbent on fresh seeds. [default: 1]")]
    = None,
    validation_n: Annotated[int | None, typer.Option(
        "--validation-n", help="Images per fresh seed block of the races, at least the last "
        "rung. [default: 2 × the last rung]")] = None,
    max_blocks: Annotated[int | None, typer.Option(
        "--max-blocks", help="Most seed blocks a race gives the incumbent (races double its "
        "blocks from 1). [default: 16]")] = None,
    no_validation: Annotated[bool, typer.Option(
        "--no-validation", help="Stop at the search's own values (a later run without it "
        "validates the study).")] = False,
    artifacts: Annotated[str | None, typer.Option(
        "--artifacts", metavar="PATH",
            help="Folder for the validated trials' sample grids (default: "
        "<db stem>.artifacts beside a SQLite database; none for a server database).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress; only the result "
                                        "table (or JSON).")] = False,
    as_json: JsonOption = False,
    offline: Annotated[bool, typer.Option("--offline", help=_OFFLINE_HELP)] = False,
) -> None:
    """Search the skip schedule ρ per step budget; resumes a stored study."""
    from skiptune import tuner
    from skiptune.objectives import ObjectiveSettings, get_metric

    if metric is not None:
        # The registry's names are the choices; an unknown one is a usage error, as before.
        try:
            get_metric(metric)
        except ConfigurationError as e:
            raise typer.BadParameter(str(e), param_hint="--metric") from e
    if rho_top is not None and rho_top_range is not None:
        raise typer.BadParameter("pass --rho-top (fixed) or --rho-top-range, not both",
                                 param_hint="--rho-top")
    if no_validation and (validate_top, validation_n, max_blocks) != (None, None, None):
        raise typer.BadParameter("pass --no-validation or the validation's settings, not both",
                                 param_hint="--no-validation")
    space_options = _set(
        rho_bottom=_floats(rho_bottom_range, name="--rho-bottom-range", count=2),
        rho_top=rho_top if rho_top is not None else _floats(rho_top_range,
                                                            name="--rho-top-range", count=2),
        shapes=_names(shapes, name="--shapes"),
        kind=space,
        freeu_b=_floats(freeu_b_range, name="--freeu-b-range", count=2),
        freeu_s=_floats(freeu_s_range, name="--freeu-s-range", count=2),
        sigma_window=_floats(sigma_window, name="--sigma-window", count=2),
    )
    objective_options = _set(metric=metric, features=features, reference=ref,
                             rungs=_ints(rungs, name="--rungs"), batch_size=batch_size)
    validation_options = _set(top_k=validate_top, num_samples=validation_n, max_blocks=max_blocks,
                              enabled=False if no_validation else None, artifacts=artifacts)
    config = _call(lambda: tuner.SearchConfig(**_set(
        nfe=tuple(nfe), sampler=tuple(sampler) if sampler else None, trials=trials,
        optimizer=optimizer, seed=seed,
        group=study, pruning=False if no_pruning else None,
        space=tuner.SearchSpace(**space_options) if space_options else None,
        objective=ObjectiveSettings(**objective_options) if objective_options else None,
        validation=(tuner.ValidationSettings(**validation_options) if validation_options
                    else None),
        parallel_candidates=parallel_candidates, heartbeat_interval=heartbeat,
        grace_period=grace, allow_large_rungs=True if allow_large_rungs else None,
    )))
    where = _set(db=db, workers=workers, device=device, revision=revision, variant=variant,
                 dtype=dtype, one_step_sigma=one_step_sigma,
                 conditioning=_conditioning(prompts, embeddings, negative_prompt,
                                            guidance_scale, class_labels) or None)
    started = time.monotonic()
    phase = _SearchPhase()
    try:
        with _fetching(offline, bar=not quiet):
            if quiet or as_json:
                summaries = tuner.search(model, config, trust_pickle=trust_pickle,
                                         on_event=_Watched(phase, _warn), **where)
            else:
                # A log file or pipe gets plain lines as they happen; a terminal, the bars.
                with (_SearchProgress(_stderr) if _stderr.is_terminal
                      else _SearchLog(_stderr, phase)) as progress:
                    summaries = tuner.search(model, config, trust_pickle=trust_pickle,
                                             on_event=_Watched(phase, progress), **where)
    # Caught outside the progress display, so the error line comes after it has stopped.
    except SkiptuneError as e:
        raise _fail(_message(e)) from None
    except KeyboardInterrupt:
        skiptune._interrupt.acknowledge()    # a later Ctrl-C must not cut this short
        raise _fail(phase.interrupted(), code=130) from None
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in summaries], indent=2))
        return
    elapsed = time.monotonic() - started
    _stdout.print(_summary_table(summaries, f"skiptune search ({elapsed:.0f} s)"))


search_app.command(help="Search the skip schedule ρ per step budget; resumes a stored study.",
                   epilog=_EPILOG_SEARCH, cls=_OneLineCommand)(search_command)
app.command("search", help="Search the skip schedule ρ per step budget; resumes a stored "
            "study.", epilog=_EPILOG_SEARCH)(search_command)


# -- reading results -------------------------------------------------------------------------


@app.command(epilog="Examples:\n\n  skiptune best\n\n  skiptune best --db runs.db --json")
def best(db: DbOption = None, study: GroupOption = None, as_json: JsonOption = False) -> None:
    """The best ρ per study (one row per step budget), against the baseline ρ = 1."""
    from skiptune import tuner

    summaries = _call(lambda: tuner.list_studies(db, group=study))
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in summaries], indent=2))
        return
    if not summaries:
        raise _fail("no skiptune studies in this database; run skiptune-search first")
    _stdout.print(_summary_table(summaries, "best ρ per step budget"))


@app.command(epilog="Examples:\n\n  skiptune front\n\n  skiptune front --study demo_unet --json")
def front(db: DbOption = None, study: GroupOption = None, as_json: JsonOption = False) -> None:
    """The Pareto front of NFE against proxy value, tuned and baseline, and what it means."""
    from skiptune import tuner

    reports = _call(lambda: tuner.front_report(db, group=study))
    if as_json:
        typer.echo(json.dumps([_report_dict(r) for r in reports], indent=2))
        return
    if not reports:
        raise _fail("no finished trials in this database yet; run skiptune-search first")
    for report in reports:
        # Every value of one report was measured alike: the title says on what.
        table = _table(f"{report.metric} at {report.measured_on}",
                       ("NFE", "sampler", "tuned", "tuned ρ", "ρ = 1"), keep_whole=("tuned ρ",))
        captions = ["* = on its sampler's front (no point of that sampler has ≤ NFE and ≤ value)"]
        if report.validated:
            captions.append("✓ validated on fresh seeds, none a trial's")
        table.caption = "\n".join(captions)
        baseline = {(b.study_name): b for b in report.baseline}
        for t in report.tuned:
            b = baseline.get(t.study_name)
            table.add_row(
                str(t.nfe), t.sampler,
                f"{t.value:.4g}{' ✓' if t.validated else ''}{' *' if t.on_front else ''}",
                _compact_schedule(t.schedule),
                "—" if b is None else f"{b.value:.4g}{' *' if b.on_front else ''}",
            )
        _stdout.print(table)
        _stdout.print(report.sentence)


def _report_dict(report: Any) -> dict[str, Any]:
    def point(p: Any) -> dict[str, Any]:
        return {"study": p.study_name, "sampler": p.sampler, "nfe": p.nfe, "value": p.value,
                "on_front": p.on_front, "schedule": p.schedule, "validated": p.validated,
                "validation": p.validation}

    return {
        "metric": report.metric,
        "num_samples": report.num_samples,
        "seed": report.seed,
        "measured_num_samples": report.measured_num_samples,
        "measured_seed": report.measured_seed,
        "measured_on": report.measured_on,
        "tuned": [point(p) for p in report.tuned],
        "baseline": [point(p) for p in report.baseline],
        "claims": [
            {"sampler": c.sampler, "tuned_nfe": c.tuned_nfe, "baseline_nfe": c.baseline_nfe,
             "saving": c.saving}
            for c in report.claims
        ],
        "sentence": report.sentence,
    }


@app.command(epilog="Examples:\n\n  skiptune export --nfe 9 -o rho.json\n\n"
             "  skiptune export --nfe 9 --sampler unipc --study mymodel -o rho.json")
def export(
    nfe: Annotated[int, typer.Option("--nfe", min=1, help="Step budget of the study.")],
    output: Annotated[str, typer.Option("--output", "-o", metavar="PATH",
                                        help="JSON file to write; - writes it to stdout.")],
    sampler: Annotated[str | None, typer.Option(metavar="NAME", help="Sampler, when several were "
                                                "searched.")] = None,
    db: DbOption = None,
    study: GroupOption = None,
    model: Annotated[str | None, typer.Option("--model", "-m", metavar="PATH",
                                              help="The searched model, "
                                              "checked against the study's weights; it names "
                                              "each skip for studies stored before skiptune "
                                              "kept their skip layout.")] = None,
    revision: RevisionOption = None,
    variant: VariantOption = None,
    dtype: DtypeOption = None,
    one_step_sigma: OneStepSigmaOption = None,
    device: Annotated[str | None, typer.Option(metavar="DEVICE",
                                               help="Where to load --model.")] = "cpu",
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help=_TRUST_PICKLE_HELP)]
    = False,
    offline: Annotated[bool, typer.Option("--offline", help=_OFFLINE_HELP)] = False,
) -> None:
    """Write the best ρ (and FreeU values) at one step budget as JSON, for one's own code."""
    from skiptune import tuner

    to_stdout = output == "-"
    with _fetching(offline):
        exported = _call(lambda: tuner.export_schedule(
            db, nfe=nfe, sampler=sampler, group=study, path=None if to_stdout else output,
            model=model, device=device, trust_pickle=trust_pickle,
            **_set(revision=revision, variant=variant, dtype=dtype,
                   one_step_sigma=one_step_sigma),
        ))
    if to_stdout:          # the file's text alone on stdout, for a pipe; the summary is stderr's
        typer.echo(exported.to_json(), nl=False)
    where = "stdout" if to_stdout else output
    console = _stderr if to_stdout else _stdout
    console.print(
        f"wrote {where}: ρ {_schedule_text(exported.schedule.to_dict())} at {exported.nfe} "
        f"NFE ({exported.sampler}); {exported.metric} {exported.value:.4g} vs "
        f"{_number(exported.baseline_value)} at ρ = 1")
    console.print(f"{exported.why}", soft_wrap=True)


@app.command(epilog="Examples:\n\n  skiptune studies\n\n  skiptune studies --json")
def studies(db: DbOption = None, study: GroupOption = None, as_json: JsonOption = False) -> None:
    """Every skiptune study in the database: trials, states, timing."""
    from skiptune import tuner

    summaries = _call(lambda: tuner.list_studies(db, group=study))
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in summaries], indent=2))
        return
    table = _table("skiptune studies (states: complete/pruned/non-finite/running)",
                   ("study", "weights", "measured on", "done", "states", "best", "ρ = 1",
                    "s/trial"))
    if any(s.validated for s in summaries):
        table.caption = "✓ best and ρ = 1 validated on fresh seeds"
    for s in summaries:
        last = s.measured_seed + s.measured_num_samples - 1
        table.add_row(
            s.study_name, s.model_fingerprint[:8],
            f"{s.metric} N={s.measured_num_samples} seeds {s.measured_seed}–{last}"
            + (" ✓" if s.validated else ""),
            f"{s.finished}/{s.trials_total}", f"{s.complete}/{s.pruned}/{s.failed}/{s.running}",
            _number(s.best_value), _number(s.baseline_value),
            "—" if s.seconds_per_trial is None else f"{s.seconds_per_trial:.1f}",
        )
    _stdout.print(table)


@app.command(epilog="Examples:\n\n  skiptune plot -o front.png")
def plot(
    output: Annotated[str, typer.Option("--output", "-o", metavar="PATH",
                                        help="PNG file to write.")],
    db: DbOption = None,
    study: GroupOption = None,
) -> None:
    """PNG: proxy value against NFE (tuned vs baseline) and against ρ_bottom per NFE."""
    from skiptune import tuner

    written = _call(lambda: tuner.plot_front(db, output, group=study))
    _stdout.print(f"wrote {written}")


@app.command(epilog="Examples:\n\n  skiptune sample --model ckpt.pt --nfe 9 --rho-bottom 0.6 "
             "-n 64 -o grid.png\n\n  skiptune sample --model ckpt.pt --from rho.json -o x.npz")
def sample(
    model: Annotated[str, typer.Option("--model", "-m", metavar="PATH",
                                       help="The model to sample.")],
    output: Annotated[str, typer.Option("--output", "-o", metavar="PATH",
                                        help=".png (grid) or .npz (uint8 "
                                        "images).")],
    revision: RevisionOption = None,
    variant: VariantOption = None,
    dtype: DtypeOption = None,
    one_step_sigma: OneStepSigmaOption = None,
    nfe: Annotated[int | None, typer.Option(min=1, help="Denoiser calls per image.")] = None,
    rho_bottom: Annotated[float | None, typer.Option(min=0.0, help="ρ of the deepest "
                                                     "skip.")] = None,
    rho_top: Annotated[float | None, typer.Option(min=0.0, help="ρ of the shallowest skip. "
                                                  "[default: 1.0]")] = None,
    shape: Annotated[Literal["linear", "power", "cosine"] | None, typer.Option(
        help="Interpolation shape. [default: linear]")] = None,
    gamma: Annotated[float | None, typer.Option(min=0.0, help="Exponent of the power "
                                                "shape.")] = None,
    freeu: Annotated[str | None, typer.Option(metavar="B1,B2,S1,S2",
                                              help="FreeU values b1,b2,s1,s2, e.g. "
                                              "1.5,1.6,0.9,0.2 (with ρ = 1 unless given).")]
    = None,
    from_file: Annotated[str | None, typer.Option("--from", metavar="PATH",
                                                  help="A file written by skiptune "
                                                  "export.")] = None,
    allow_other_weights: Annotated[bool, typer.Option(help="Use an export searched on other "
                                                      "weights.")] = False,
    allow_other_budget: Annotated[bool, typer.Option(help="Apply an export at another --nfe "
                                                     "or --sampler than it was searched "
                                                     "for.")] = False,
    sampler: Annotated[str | None, typer.Option(
        metavar="NAME", help=f"Sampler: {_SAMPLER_NAMES} (an export's own with --from). "
        f"{_SAMPLER_DEFAULT}")] = None,
    num_samples: Annotated[int, typer.Option(
        "-n", "--num-samples", min=1, help="How many images to sample.")] = 64,
    seed: Annotated[int, typer.Option(
        min=0, help="Noise seed of image 0; image j uses seed + j, as in the search.")] = 0,
    device: Annotated[str | None, typer.Option(metavar="DEVICE",
                                               help="auto, cpu, cuda or cuda:N.")] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help=_TRUST_PICKLE_HELP)]
    = False,
    class_labels: Annotated[str | None, typer.Option(metavar="N,N",
                                                     help=_CLASS_LABELS_HELP)] = None,
    prompts: PromptsOption = None,
    embeddings: EmbeddingsOption = None,
    negative_prompt: NegativeOption = None,
    guidance_scale: GuidanceOption = None,
    offline: Annotated[bool, typer.Option("--offline", help=_OFFLINE_HELP)] = False,
) -> None:
    """Sample images under a schedule to look at its effect (.png grid or .npz).

    Without --rho-bottom or --from, the untuned model (ρ = 1) is sampled, at --nfe or 9.
    """
    from skiptune import sampling
    from skiptune.freeu import FreeU
    from skiptune.schedule import TuningSchedule

    schedule = None
    shaping = _set(rho_top=rho_top, shape=shape, gamma=gamma)
    values = _floats(freeu, name="--freeu", count=4)
    if rho_bottom is not None or values is not None:
        schedule = _call(lambda: TuningSchedule(
            rho_bottom=1.0 if rho_bottom is None else rho_bottom, **shaping,
            freeu=None if values is None else FreeU(*values),
        ))
    elif shaping:
        raise typer.BadParameter("--rho-top, --shape and --gamma shape a schedule: pass "
                                 "--rho-bottom with them", param_hint="--rho-bottom")
    with _fetching(offline):
        written = _call(lambda: sampling.write_samples(
            model, output, schedule=schedule, exported=from_file,
            allow_other_weights=allow_other_weights, allow_other_budget=allow_other_budget,
            nfe=nfe, sampler=sampler, num_samples=num_samples, seed=seed, device=device,
            trust_pickle=trust_pickle, **_set(revision=revision, variant=variant, dtype=dtype,
                                              one_step_sigma=one_step_sigma),
            conditioning=_conditioning(prompts, embeddings, negative_prompt, guidance_scale,
                                       class_labels),
        ))
    untuned = " (the untuned model: pass --rho-bottom or --from to apply a schedule)"
    _stdout.print(
        f"wrote {written['path']}: {written['num_samples']} images, ρ "
        f"{_schedule_text(written['schedule'])}{untuned if written['untuned'] else ''}, "
        f"{written['nfe']} NFE ({written['sampler']})", soft_wrap=True,
    )


ArtifactsOption = Annotated[str | None, typer.Option(
    "--artifacts", metavar="PATH",
            help="Folder of the sample grids (default: <db stem>.artifacts beside a "
    "SQLite database).")]


@app.command(epilog="Examples:\n\n  skiptune report -o report.html\n\n"
             "  skiptune report --db runs.db --study demo_unet -o report.html")
def report(
    output: Annotated[str, typer.Option("--output", "-o", metavar="PATH",
                                        help="HTML file to write.")],
    db: DbOption = None, study: GroupOption = None, artifacts: ArtifactsOption = None,
) -> None:
    """One self-contained HTML page: fronts, tuned and ρ = 1 grids, gains, factors per skip."""
    from skiptune import tuner

    written = _call(lambda: tuner.write_report(db, output, group=study, artifacts=artifacts))
    _stdout.print(f"wrote {written}")


@app.command(epilog="Examples:\n\n  skiptune dashboard\n\n  skiptune dashboard --db runs.db "
             "--port 8081")
def dashboard(
    db: DbOption = None, artifacts: ArtifactsOption = None,
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8080,
) -> None:
    """optuna-dashboard on the study database; each trial's page shows its sample grid."""
    from skiptune import tuner

    _call(lambda: tuner.serve_dashboard(db, host=host, port=port, artifacts=artifacts))


# What an output that cannot encode skiptune's symbols (PYTHONIOENCODING=ascii, a C locale)
# prints instead of them; any other such character becomes "?".
_ASCII_FALLBACK = {
    "ρ": "rho", "σ": "sigma", "γ": "gamma", "→": "->", "−": "-", "—": "-", "–": "-",
    "…": "...", "✓": "ok", "·": "-", "≤": "<=", "≥": ">=", "×": "x", "±": "+/-", "≈": "~",
    "¹": "1", "⁰": "0", "²": "2",
}


def _ascii_fallback(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start:error.end]
    return "".join(_ASCII_FALLBACK.get(c, "?") for c in text), error.end


def _spelled_for(stream: Any, text: str) -> str:
    """``text`` as ``stream`` prints it: each character its encoding lacks spelled as
    ``_ASCII_FALLBACK`` says (what the "skiptune-ascii" error handler writes)."""
    if _encodes(stream, text):
        return text
    return "".join(c if c.isascii() or _encodes(stream, c) else _ASCII_FALLBACK.get(c, "?")
                   for c in text)


class _StdoutFailed(OSError):
    """A write to stdout failed (a full disk, /dev/full, a closed pipe)."""


class _CheckedStdout(io.RawIOBase):
    """stdout's file descriptor, whose failed writes say that they were stdout's."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: Any) -> int:
        try:
            return os.write(self._fd, data)
        except OSError as e:
            raise _StdoutFailed(e.errno, e.strerror) from e


def _prepare_output() -> None:
    """stdout and stderr that print ρ as ``rho`` (and so on) where their encoding lacks it,
    instead of failing with UnicodeEncodeError halfway through a table; and a stdout whose
    failed writes the edge can tell from any other OSError."""
    codecs.register_error("skiptune-ascii", _ascii_fallback)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and not _encodes(stream, "ρσ→"):
            stream.reconfigure(errors="skiptune-ascii")
    out = sys.stdout
    if out is None:             # started with stdout closed (`>&-`): Python gives no stream
        sys.stdout = _closed_stdout()
        return
    try:
        fd = out.fileno()
        out.flush()
    except (AttributeError, OSError, ValueError):
        return                  # not a file (a test's capture): its writes cannot fail so
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(_CheckedStdout(fd)), encoding=out.encoding, errors=out.errors,
        line_buffering=bool(getattr(out, "line_buffering", False)),
    )


class _ClosedStdout(_CheckedStdout):
    """A stdout that was closed when the command started: the first write fails as
    stdout's (the edge says so in one line); what comes after is dropped, so that Python's
    own flush at exit does not fail again."""

    _failed = False

    def write(self, data: Any) -> int:
        if not self._failed:
            self._failed = True
            raise _StdoutFailed(errno.EBADF, "stdout is closed")
        return len(data)


def _closed_stdout() -> io.TextIOWrapper:
    """The stream for a closed stdout. File descriptor 1 is first taken by the null device,
    so that no file the command opens (the database) gets it and receives the output."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        if null != 1:
            os.dup2(null, 1)
            os.close(null)
    return io.TextIOWrapper(io.BufferedWriter(_ClosedStdout(1)), encoding="utf-8",
                            errors="skiptune-ascii")


def _encodes(stream: Any, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _output_failed(error: OSError) -> int:
    """One line on stderr for a stdout that cannot be written, and stdout pointed at the
    null device, so that Python's own flush at exit does not fail again with a traceback."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    reason = error.strerror or type(error).__name__
    fix = ("open it (drop '>&-') or redirect it to a file" if error.errno == errno.EBADF
           else "free space or redirect it elsewhere")
    return _echo_error(f"cannot write the output to stdout ({reason}); {fix}, then run the "
                       "command again", code=1)


def _edge(command: Callable[[], Any]) -> None:
    """Run ``command`` so that nothing escapes it but an exit code and at most one line.

    Ctrl-C anywhere (while importing torch, parsing, loading, searching) exits 130 with one
    line; a SkiptuneError raised outside a command (a malformed SKIPTUNE_FAILPOINTS is read
    when the library is imported) becomes its line and exit code 1. Output the terminal's
    encoding lacks is transliterated (ρ as ``rho``); a stdout that cannot be written is one
    line and exit code 1.
    """
    _prepare_output()
    skiptune._interrupt.quiet_connection_cleanup()
    try:
        try:
            _guarded(command)
        finally:
            # Flushed here, not at exit, where a failure prints "Exception ignored" instead.
            sys.stdout.flush()
    except _StdoutFailed as e:
        raise SystemExit(_output_failed(e)) from None


def _guarded(command: Callable[[], Any]) -> None:
    try:
        if not _NO_LIBRARY_FLAGS & set(sys.argv[1:]):
            _import_the_library(reads_only=command is app and _reads_only(sys.argv[1:]))
        with skiptune._interrupt.armed():
            command()
    except KeyboardInterrupt:
        skiptune._interrupt.acknowledge()    # a later Ctrl-C must not cut this short
        raise SystemExit(_interrupted_line()) from None
    except SkiptuneError as e:
        raise SystemExit(_echo_error(_message(e), code=1)) from None
    except SystemExit as e:
        # typer turns a Ctrl-C it sees into a silent exit 130: say what happened.
        if e.code == 130 and skiptune._interrupt.interrupted() and not _said:
            raise SystemExit(_interrupted_line()) from None
        raise


# What answers without the library: help and the version.
_NO_LIBRARY_FLAGS = frozenset({"--help", "-h", "--version"})

# The commands that only read the database: they never need torch.
_READ_COMMANDS = frozenset({"best", "front", "studies", "plot", "report", "dashboard"})


def _reads_only(args: Sequence[str]) -> bool:
    """Whether ``skiptune ARGS`` names a read command (its name is the first non-option)."""
    return next((a for a in args if not a.startswith("-")), None) in _READ_COMMANDS


def _import_the_library(*, reads_only: bool) -> None:
    """Import what the command runs on (through the library) before Ctrl-C is armed, and keep
    Optuna's INFO lines ("Trial 3 finished...") off the terminal.

    A KeyboardInterrupt raised in the middle of an import leaves a half-initialised module
    behind (numpy's then recurses without end when imported again); a Ctrl-C during these
    imports is only counted, and acted on as soon as the command is armed. The read commands
    need Optuna, SQLAlchemy and numpy; the others also torch and the models, objectives and
    samplers built on it, which take three seconds of CPU more to import.
    """
    if not reads_only:
        import skiptune.models
        from skiptune.objectives import build_objective  # noqa: F401 (imports the objective)
        from skiptune.sampling import write_samples  # noqa: F401 (and the samplers' images)
    import skiptune.tuner

    skiptune.tuner.quiet_optuna()     # the commands show their own progress; imports the readers


def _interrupted_line() -> int:
    if _said:
        return 130
    return _echo_error("interrupted (Ctrl-C); finished trials are kept: rerun the same command "
                       "to go on", code=130)


def main() -> None:
    """Entry point of ``skiptune``."""
    _edge(app)


def search_main() -> None:
    """Entry point of ``skiptune-search``: the search command alone."""
    _edge(search_app)


if __name__ == "__main__":
    main()
