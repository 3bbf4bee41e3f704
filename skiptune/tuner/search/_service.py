"""The search service: plan one study per step budget, then run it in one or more workers."""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import torch

import skiptune.errors as errors
from skiptune._interrupt import acknowledge as acknowledge_interrupt
from skiptune._interrupt import quiet_connection_cleanup
from skiptune.errors import ConfigurationError, NonFiniteSampleError, SkiptuneError
from skiptune.freeu import FREEU_DEFAULTS
from skiptune.models import TunableModel, load_model, not_images_reason
from skiptune.objectives import (
    ObjectiveConfig,
    ReferenceProgress,
    StatisticsCache,
    build_objective,
    check_disjoint_seeds,
    is_self_reference,
)
from skiptune.sampling import get_sampler
from skiptune.schedule import check_sigma_window
from skiptune.steps import StepGrid
from skiptune.storage import (
    NoSkiptuneDatabaseError,
    PendingStatisticsCache,
    Storage,
    mask_url,
    normalise_url,
    open_storage,
)
from skiptune.tuner.results import StudySummary, summarize
from skiptune.tuner.search._events import (
    EventCallback,
    Note,
    ReferenceSampled,
    SearchEvent,
    WorkerLost,
)
from skiptune.tuner.search._objective import Objective
from skiptune.tuner.search._run import check_stored_study, prepare_study, run_study
from skiptune.tuner.search._space import queued_schedules
from skiptune.tuner.study import (
    SearchConfig,
    SearchSpace,
    StudyConfig,
    config_differences,
    default_group,
)

__all__ = ["plan_study", "resolve_objective", "search", "sigterm_as_interrupt"]


# A scheduler's pre-emption (SIGTERM) and a closed terminal or SSH session (SIGHUP): both
# end the search like Ctrl-C, failing and re-queueing the running trial with one line.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP (:data:`STOP_SIGNALS`) act like Ctrl-C.

    The running trial is then failed and re-queued at once instead of waiting to go stale.
    Only in the main thread, where Python can install handlers; the old handlers come back.
    A SIGHUP that was ignored (a search started under ``nohup``) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)


@contextlib.contextmanager
def _database_errors(storage: Storage) -> Iterator[None]:
    """A database failure inside Optuna's calls becomes one StorageError line, as in ours."""
    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        raise storage.database_error(e) from None   # the driver's text may hold a password


def plan_study(
    model: TunableModel, config: SearchConfig, nfe: int, *, sampler: str | None = None,
    cache: StatisticsCache | None = None, on_event: EventCallback | None = None,
) -> tuple[StudyConfig, Objective]:
    """The study of ``config`` at budget ``nfe`` with ``sampler`` (one of ``config.samplers``;
    None: the first) on ``model``, and the objective that measures it.

    The settings are resolved against the model here, once: its feature network where the
    user named none (``model.default_features``, Inception for Stable Diffusion), its
    family's FreeU values as a known point, the study group named after it. Raises
    ConfigurationError for a space the model cannot search or a reference it lacks.
    """
    reason = not_images_reason(model)
    if reason is not None and config.objective.features in (None, "digits", "inception"):
        raise ConfigurationError(f"{reason}, or objective.features with a network of yours "
                                 "that takes them", field="objective.features")
    objective_config = config.objective.for_budget(
        sampler=sampler or config.samplers[0], nfe=nfe, seed=config.seed,
        default_features=model.default_features,
    )
    space = _space_for(model, config.space, sampler=objective_config.sampler,  # cheap checks
                       schedule_exponent=objective_config.schedule_exponent)
    if is_self_reference(objective_config.reference):
        last = objective_config.num_samples
        check_disjoint_seeds(seed=config.seed, count=last + config.validation.samples_for(last))
    objective = resolve_objective(model, objective_config, cache=cache,
                                  on_reference=_reference_events(on_event))
    study = StudyConfig(
        model=str(model.source),
        model_fingerprint=model.fingerprint,
        objective=objective_config,
        objective_identity=dict(objective.identity),
        trials=config.trials,
        optimizer=config.optimizer,
        space=space,
        group=config.group or default_group(model.source),
        pruning=config.pruning,
    )
    return study, objective


def resolve_objective(
    model: TunableModel,
    objective: ObjectiveConfig,
    *,
    cache: StatisticsCache | None = None,
    study: StudyConfig | None = None,
    on_reference: ReferenceProgress | None = None,
) -> Objective:
    """The objective measuring ``objective`` on ``model``: the search and every worker build
    theirs here. Given the ``study`` a worker joins, other weights than the study's, or an
    objective that measures differently (another reference or feature network on this
    machine), are refused."""
    if study is not None and model.fingerprint != study.model_fingerprint:
        raise ConfigurationError(
            f"{model.source} holds other weights than study {study.study_name} searched"
        )
    built = build_objective(model, objective, device=model.device, cache=cache,
                            on_reference=on_reference)
    if study is not None:
        differences = config_differences(study.objective_identity, dict(built.identity))
        if differences:
            raise ConfigurationError(
                f"{model.source} is measured differently from study {study.study_name}: "
                f"{', '.join(differences)}"
            )
    return built


def _reference_events(on_event: EventCallback | None) -> ReferenceProgress | None:
    """A self-reference's progress as ReferenceSampled events."""
    if on_event is None:
        return None

    def progress(spec: str, done: int, total: int, *, cached: bool = False) -> None:
        on_event(ReferenceSampled(source=spec, done=done, total=total, cached=cached))

    return progress


def _reported_once(on_event: EventCallback | None) -> EventCallback | None:
    """``on_event``, less the reports that a reference this search has reported already is
    cached: the studies after the first that share it find it so."""
    if on_event is None:
        return None
    reported: set[str] = set()

    def forward(event: SearchEvent) -> None:
        if isinstance(event, ReferenceSampled):
            if event.cached and event.source in reported:
                return
            reported.add(event.source)
        on_event(event)

    return forward


def _space_for(
    model: TunableModel, space: SearchSpace, *, sampler: str = "heun",
    schedule_exponent: float = 7.0,
) -> SearchSpace:
    """``space`` checked against the model, with its family's FreeU values as a known point
    and a step space's σ ranges and ``sampler``'s own grid (``_steps_for``).

    The known point is resolved here, once, and stored with the study's space; a user who
    set ``freeu_known`` keeps theirs.
    """
    if space.sigma_window is not None:
        check_sigma_window(*space.sigma_window, model_range=(model.sigma_min, model.sigma_max))
    if space.searches_steps:
        space = _steps_for(model, space, sampler=sampler, schedule_exponent=schedule_exponent)
    if not space.searches_freeu:
        return space
    if not model.freeu_stages:
        raise ConfigurationError(
            f"space.kind {space.kind} needs FreeU stages, and this {model.family} model has "
            "none that skiptune knows; search ρ only (space.kind rho)",
            field="space.kind",
        )
    if space.freeu_known is not None:
        return space
    family = model.freeu_family
    if family not in FREEU_DEFAULTS:
        return space        # FreeU's authors recommend values for SD-family models only
    known = FREEU_DEFAULTS[family]
    return dataclasses.replace(space, freeu_known=(known.b1, known.b2, known.s1, known.s2))


def _steps_for(
    model: TunableModel, space: SearchSpace, *, sampler: str, schedule_exponent: float
) -> SearchSpace:
    """A step space resolved against the model: σ ranges inside its trained range that keep
    every grid decreasing, and ``sampler``'s own grid (``schedule_exponent`` over the
    model's range) as the known point measured first."""
    low, high = model.sigma_min, model.sigma_max
    if get_sampler(sampler).grid != "karras":
        raise ConfigurationError(
            f"{sampler} walks the model's training timesteps, so its steps cannot "
            "be searched; drop steps from space.kind or choose a sampler such as heun",
            field="space.kind",
        )
    sigma_min = space.steps_sigma_min or (low, min(50 * low, high / 10))
    sigma_max = space.steps_sigma_max or (high / 4, high)
    for bounds in (sigma_min, sigma_max):
        StepGrid(1.0, *bounds).check_inside((low, high))     # its message names the range
    return dataclasses.replace(
        space, steps_sigma_min=sigma_min, steps_sigma_max=sigma_max,
        steps_known=space.steps_known or (schedule_exponent, low, high),
    )


def _run_options(config: SearchConfig) -> dict[str, Any]:
    """How each study is run (``run_study``'s keywords): nothing here changes its values."""
    return {
        "heartbeat_interval": config.heartbeat_interval, "grace_period": config.grace_period,
        "validation": config.validation, "parallel_candidates": config.parallel_candidates,
    }


def search(
    model: str | Path,
    config: SearchConfig,
    *,
    db: str | Path | Storage | None = None,    # SQLAlchemy URL or path; default ./skiptune.db
    workers: int = 1,                          # processes on this machine (one per GPU)
    device: str | None = None,                 # "auto"/None, "cpu", "cuda", "cuda:N"
    trust_pickle: bool = False,
    conditioning: Mapping[str, Any] | None = None,  # a conditional model's choices, e.g.
                                               # {"class_labels": [3]}; part of the identity
    on_event: EventCallback | None = None,
    revision: str | None = None,               # of a hub id ``model``, see load_model
    variant: str | None = None,                # of diffusers weights, see load_model
    dtype: str | None = None,                  # float16, bfloat16, float32; see load_model
    one_step_sigma: float | None = None,       # σ_init of an EDM one-step generator, see
                                               # load_model; part of the identity
) -> list[StudySummary]:
    """Search the skip schedule of ``model`` at each budget of ``config``; resume where stored.

    One study per budget and sampler, named ``skiptune-<group>-<sampler>-nfe<NFE>``, budget
    by budget, the samplers in the order given. ``config.trials``
    is the total of finished trials (complete, pruned, or failed with non-finite samples) the
    study should reach: rerunning after a crash or Ctrl-C completes it, and a study that
    already has its total returns its summary at once. A stored study searched with other
    settings (weights, metric, seeds, rungs, reference, space...) is refused with
    ConfigurationError.

    With ``workers`` > 1, that many processes share each study (PostgreSQL or another
    server only; SQLite serialises writers). Progress goes to ``on_event``; nothing is
    printed. Returns one summary per study, in that order.

    ``config.parallel_candidates`` K > 1 asks K trials at once and samples their images in
    one batch with per-sample factors: the same values as K trials in turn, up to float
    rounding, at a GPU's batch throughput. CPU default 1; no GPU default has been measured.

    A study at its total is validated (``config.validation``): its best distinct schedules
    and ρ = 1 are re-scored on fresh seeds, and the summary reports the validated choice.
    """
    if not isinstance(config, SearchConfig):
        raise ConfigurationError(
            f"search takes a SearchConfig, e.g. SearchConfig(nfe=9), got {type(config).__name__}"
        )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigurationError(f"workers must be a whole number ≥ 1, got {workers!r}",
                                 field="workers")
    # Everything that can be checked without the database is checked before it is opened:
    # a mistake then leaves an existing database untouched and creates no new one.
    url = db.url if isinstance(db, Storage) else normalise_url(db)
    if workers > 1 and url.get_backend_name() == "sqlite":
        raise ConfigurationError(
            f"{workers} workers cannot share SQLite ({mask_url(url)}): it lets one "
            "process write at a time; use PostgreSQL, e.g. db "
            "postgresql+psycopg://user@host/db, or workers 1",
            field=("db", "workers"),
        )
    device = None if device in (None, "auto") else device
    loaded = load_model(model, device=device, trust_pickle=trust_pickle,
                        conditioning=conditioning, revision=revision, variant=variant,
                        dtype=dtype, one_step_sigma=one_step_sigma)
    config = config.for_model(loaded.default_sampler)
    # The objectives (and so the reference) are checked against a read-only view of the
    # database; only then is it created or given skiptune's tables.
    reader = db if isinstance(db, Storage) else _read_only(db)
    cache = PendingStatisticsCache(None if reader is None else reader.statistics_cache)
    planning = _reported_once(on_event)
    try:
        plans = [plan_study(loaded, config, budget, sampler=sampler, cache=cache,
                            on_event=planning)
                 for budget in config.budgets for sampler in config.samplers]
    finally:
        if reader is not None and reader is not db:
            reader.dispose()
    # Optuna's tables but not skiptune's: a plain Optuna database, given skiptune's below.
    adopted = None
    if not isinstance(db, Storage):
        stored = _check_stored_studies(db, [study for study, _objective in plans])
        adopted = stored if reader is None else None
    storage = db if isinstance(db, Storage) else open_storage(db)
    try:
        cache.flush_into(storage.statistics_cache)
        with _database_errors(storage):
            layout = [site.name for site in loaded.skip_sites]
            studies = [prepare_study(storage, study, skip_layout=layout)[0]
                       for study, _objective in plans]
        _report_reference_notes(plans, on_event)    # once the search surely runs: a refusal
        _emit_notes({_adopted_note(storage.display_url, adopted)}, on_event)
        study_configs = [study for study, _objective in plans]      # stays one line
        # Before the run, not after it: minutes spent on a search that searches nothing.
        _emit_notes({known_points_note(trials=s.trials, space=s.space) for s in study_configs},
                    on_event)
        if workers == 1:
            # Preparing used a pool that the trials never touch (they use Optuna's heartbeat
            # storage); closing it keeps a worker at 4 server connections instead of 6.
            storage.dispose()
            with sigterm_as_interrupt(), _database_errors(storage):
                summaries = [run_study(storage, study, objective, on_event=on_event,
                                       **_run_options(config))
                             for study, objective in plans]
            _measured(summaries)
            return summaries
        del plans, loaded                      # free the planning copy before workers load theirs
        with sigterm_as_interrupt():
            lost = _run_workers(
                storage, study_configs, config, workers=workers, model=str(model),
                device=device, trust_pickle=trust_pickle, conditioning=dict(conditioning or {}),
                on_event=on_event, revision=revision, variant=variant, dtype=dtype,
                one_step_sigma=one_step_sigma,
            )
        with _database_errors(storage):
            summaries = [summarize(study, study_config)
                         for study, study_config in zip(studies, study_configs, strict=True)]
        _judge_lost_workers(lost, summaries, on_event)
        _measured(summaries)
        return summaries
    finally:
        if storage is not db:
            # Closing the pools checkpoints SQLite's WAL into the database file, so that a
            # copy of the file alone (no -wal beside it) holds every result.
            storage.dispose()


def _report_reference_notes(
    plans: list[tuple[StudyConfig, Objective]], on_event: EventCallback | None
) -> None:
    """Each distinct note of the studies' references (e.g. EDM's Inception port), once."""
    notes = {getattr(getattr(objective, "reference", None), "note", None)
             for _study, objective in plans}
    _emit_notes(notes, on_event)


def _emit_notes(notes: set[str | None], on_event: EventCallback | None) -> None:
    for message in sorted(n for n in notes if n):
        if on_event is not None:
            on_event(Note(message=message))


def known_points_note(*, trials: int, space: SearchSpace) -> str | None:
    """The note for a study whose ``trials`` do not go past the points queued before any
    search (the baseline, the paper's schedules, FreeU's values); None when it searches."""
    known = len(queued_schedules(space))
    if trials > known:
        return None
    measured = ("the baseline ρ = 1" if trials == 1 else
                f"known points (the baseline and {trials - 1} of {known - 1} published "
                "schedules)")
    default = SearchConfig.trials               # the dataclass's default: one source
    enough = max(default, known + 1)
    return (f"--trials {trials} measures only {measured}: nothing is searched; pass --trials "
            f"{enough}{' (the default)' if enough == default else ''} or more to search")


def _judge_lost_workers(
    lost: dict[int, int | None], summaries: list[StudySummary], on_event: EventCallback | None
) -> None:
    """A worker that died is an error only if the studies fell short of their totals; when
    the survivors finished them, the results stand and each loss is reported as an event."""
    if not lost:
        return
    named = ", ".join(f"worker {w} (exit code {code})" for w, code in sorted(lost.items()))
    short = [s.study_name for s in summaries if not s.done]
    if short:
        raise SkiptuneError(
            f"{named} died and {', '.join(short)} did not reach its total; rerun the same "
            "command to resume (finished trials are kept)"
        )
    for worker, code in sorted(lost.items()):
        if on_event is not None:
            on_event(WorkerLost(worker, code))


def _measured(summaries: list[StudySummary]) -> None:
    """Refuse a study that finished without one finite measurement.

    Non-finite samples fail a trial as a measurement (this ρ diverges); when every trial
    of a study fails so, ρ = 1 included, the model itself gives NaN or inf, and a table of
    "—" with exit code 0 would hide that.
    """
    for s in summaries:
        if s.done and s.complete == 0 and s.failed > 0 and s.pruned == 0:
            raise NonFiniteSampleError(
                f"every trial of {s.study_name} ({s.failed} of {s.finished}, ρ = 1 included) "
                "sampled NaN or inf: the model itself returns non-finite values; check its "
                "weights and its denoise output, then search again with another group",
                field="group",
            )


def _read_only(db: str | Path | None) -> Storage | None:
    """The database opened read-only, or None where it holds no skiptune tables yet."""
    try:
        return open_storage(db, read_only=True)
    except NoSkiptuneDatabaseError:
        return None


def _check_stored_studies(
    db: str | Path | None, studies: list[StudyConfig]
) -> list[str] | None:
    """Refuse, before anything is written, a stored study of the same name that skiptune did
    not create or that was searched with other settings, in a skiptune or plain Optuna
    database: a refused search must not have given it skiptune's tables or a lock file.

    Returns the names of the studies the database holds; None where it holds none of
    Optuna's tables (a new database)."""
    try:
        view = open_storage(db, read_only=True, optuna_only=True)
    except NoSkiptuneDatabaseError:
        return None                          # nothing stored yet: no study to conflict with
    try:
        with _database_errors(view):
            optuna_storage = view.optuna_storage()
            for study in studies:
                try:
                    stored = optuna.load_study(study_name=study.study_name,
                                               storage=optuna_storage)
                except KeyError:
                    continue
                check_stored_study(stored, study, display=view.display_url)
            return [summary.study_name for summary in optuna_storage.get_all_studies()]
    finally:
        view.dispose()


def _adopted_note(display: str, studies: list[str] | None) -> str | None:
    """The note for a plain Optuna database (``studies``: what it held) that this search gave
    skiptune's tables; None when it was skiptune's already, or new."""
    if studies is None:
        return None
    added = f"{display} was a plain Optuna database: skiptune added its own tables beside Optuna's"
    if not studies:
        return added
    shown = ", ".join(name[:60] for name in studies[:3]) + (
        f" and {len(studies) - 3} more" if len(studies) > 3 else "")
    one = len(studies) == 1
    return (f"{added} and keeps its {len(studies)} {'study' if one else 'studies'} ({shown}) "
            f"as {'it is' if one else 'they are'}; use a new database to keep skiptune's "
            "studies apart")


def _worker_device(device: str | None, worker: int) -> str | None:
    """One GPU per worker when the device is left to us and there are several."""
    if device is None and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return f"cuda:{worker % torch.cuda.device_count()}"
    return device


def _worker_main(
    worker: int,
    url: str,
    pool: tuple[int, int],
    studies: list[StudyConfig],
    config: SearchConfig,
    model: str,
    device: str | None,
    trust_pickle: bool,
    conditioning: dict[str, Any],
    threads: int,
    events: Connection,
    revision: str | None = None,
    variant: str | None = None,
    dtype: str | None = None,
    one_step_sigma: float | None = None,
) -> None:
    """One worker process: load the model, rebuild each study's objective, run the studies.

    Progress events, then the outcome as a tuple (kind, worker, error type, message), go to
    ``events``, this worker's own pipe, so the parent can re-raise a worker's SkiptuneError
    as its own one-line error.
    """
    torch.set_num_threads(threads)
    quiet_connection_cleanup()
    try:
        for signum in STOP_SIGNALS:                  # like Ctrl-C, see sigterm_as_interrupt
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, signal.default_int_handler)
        # Python's own Ctrl-C, not the command line's (which a spawned worker inherits by
        # re-importing the parent's main module, and which is armed only in the parent).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        storage = open_storage(url, pool_size=pool[0], max_overflow=pool[1])
        loaded = load_model(model, device=_worker_device(device, worker),
                            trust_pickle=trust_pickle, conditioning=conditioning,
                            revision=revision, variant=variant, dtype=dtype,
                            one_step_sigma=one_step_sigma)
        for study in studies:
            objective = resolve_objective(loaded, study.objective,
                                          cache=storage.statistics_cache, study=study)
            with _database_errors(storage):
                run_study(storage, study, objective, worker=worker, on_event=events.send,
                          **_run_options(config))
        events.send(("done", worker, None, None))
    except KeyboardInterrupt:
        acknowledge_interrupt()            # a later Ctrl-C must not cut this short
        events.send(("interrupted", worker, None, None))
    except SkiptuneError as e:
        events.send(("error", worker, type(e).__name__, str(e)))
    except BaseException as e:
        events.send(("error", worker, "SkiptuneError", f"worker {worker} crashed: {e!r}"))
        raise


def _run_workers(
    storage: Storage,
    studies: list[StudyConfig],
    config: SearchConfig,
    *,
    workers: int,
    model: str,
    device: str | None,
    trust_pickle: bool,
    conditioning: dict[str, Any],
    on_event: EventCallback | None,
    revision: str | None = None,
    variant: str | None = None,
    dtype: str | None = None,
    one_step_sigma: float | None = None,
) -> dict[int, int | None]:
    """Run the workers; return those that died without a word (worker → exit code).

    A worker's SkiptuneError is raised here as this process's own; Ctrl-C as
    KeyboardInterrupt. A worker that vanished (killed, crashed hard) is returned, for the
    caller to judge by whether the studies reached their totals anyway.
    """
    context = multiprocessing.get_context("spawn")     # CUDA and forked pools do not mix
    # One plain pipe per worker, not a multiprocessing.Queue: a Queue's locks are named
    # semaphores kept by the resource tracker process, and a tracker that died (killed,
    # OOM) made every process print KeyError tracebacks when it released them.
    pipes = [context.Pipe(duplex=False) for _ in range(workers)]
    threads = max(1, (os.cpu_count() or 1) // workers)
    url = storage.url.render_as_string(hide_password=False)
    storage.dispose()
    processes = [
        context.Process(
            target=_worker_main,
            args=(i, url, (storage.pool_size, storage.max_overflow), studies, config, model,
                  device, trust_pickle, conditioning, threads, writer, revision, variant,
                  dtype, one_step_sigma),
            name=f"skiptune-worker-{i}",
        )
        for i, (_reader, writer) in enumerate(pipes)
    ]
    for process, (_reader, writer) in zip(processes, pipes, strict=True):
        process.start()
        writer.close()            # the worker holds the only writing end: its exit is EOF
    readers = {reader: i for i, (reader, _writer) in enumerate(pipes)}
    notes: set[Note] = set()
    failure: tuple[str, str] | None = None
    lost: dict[int, int | None] = {}
    interrupted = False
    try:
        while readers:
            ready = wait(list(readers))
            for reader in [r for r in readers if r in ready]:
                worker = readers[reader]
                try:
                    event = reader.recv()
                except (EOFError, OSError):         # exited without its outcome: lost
                    del readers[reader]
                    processes[worker].join(timeout=60)
                    if processes[worker].exitcode not in (0, None):
                        lost[worker] = processes[worker].exitcode
                    continue
                if isinstance(event, tuple):
                    kind, _worker, error_type, message = event
                    del readers[reader]
                    if kind == "error" and failure is None:
                        failure = (error_type, message)
                    interrupted = interrupted or kind == "interrupted"
                elif isinstance(event, Note):      # each worker says it: heard once
                    if event not in notes and on_event is not None:
                        on_event(event)
                    notes.add(event)
                elif on_event is not None:
                    on_event(event)
    except KeyboardInterrupt:
        acknowledge_interrupt()            # a later Ctrl-C must not cut this short
        interrupted = True
        # Ctrl-C reaches every process of the terminal's group; a SIGTERM sent to this
        # process alone is passed on, so each worker fails and re-queues its own trial.
        deadline = time.monotonic() + 2.0
        for process in processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
    finally:
        for process in processes:
            process.join(timeout=60)
        for reader, _writer in pipes:
            reader.close()
    if interrupted:
        raise KeyboardInterrupt
    if failure is not None:
        error_type = getattr(errors, failure[0], SkiptuneError)
        if not (isinstance(error_type, type) and issubclass(error_type, SkiptuneError)):
            error_type = SkiptuneError
        raise error_type(failure[1])
    return lost
