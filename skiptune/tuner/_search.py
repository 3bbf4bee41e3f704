"""The search service: plan one study per step budget, then run it in one or more workers."""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import torch

import skiptune.errors as errors
from skiptune._interrupt import acknowledge as acknowledge_interrupt
from skiptune.errors import ConfigurationError, NonFiniteSampleError, SkiptuneError
from skiptune.freeu import FREEU_DEFAULTS
from skiptune.models import TunableModel, load_model
from skiptune.sampling import steps_for_nfe
from skiptune.schedule import check_sigma_window
from skiptune.storage import (
    NoSkiptuneDatabaseError,
    PendingStatisticsCache,
    Storage,
    mask_url,
    normalise_url,
    open_storage,
)
from skiptune.tuner._config import SearchConfig, SearchSpace, config_differences, default_group
from skiptune.tuner._events import EventCallback, WorkerLost
from skiptune.tuner._study import Objective, prepare_study, run_study
from skiptune.tuner._summary import StudySummary, summarize
from skiptune.tuner._validation import ValidationSettings

__all__ = [
    "MAX_RUNG",
    "check_heartbeat",
    "check_rungs",
    "plan_search",
    "search",
    "sigterm_as_interrupt",
]


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM (a scheduler's pre-emption) acts like Ctrl-C.

    The running trial is then failed and re-queued at once instead of waiting to go stale.
    Only in the main thread, where Python can install handlers; the old handler comes back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _database_errors(storage: Storage) -> Iterator[None]:
    """A database failure inside Optuna's calls becomes one StorageError line, as in ours."""
    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        raise storage.database_error(e) from None


def plan_search(
    model: TunableModel,
    *,
    nfe: int,                                  # denoiser calls per image
    sampler: str = "heun",
    trials: int = 30,                          # total of finished trials to reach
    optimizer: str = "tpe",
    space: SearchSpace | None = None,
    seed: int = 0,                             # noise seed of sample 0, and optimizer seed
    group: str | None = None,                  # study group; default: named after the model
    pruning: bool = True,
    objective_options: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    cache: Any = None,                         # a StatisticsCache (the database's, usually)
) -> tuple[SearchConfig, Objective]:
    """Resolve one study's configuration and build its objective.

    ``objective_options`` are forwarded to ``ObjectiveConfig`` (metric, features, reference,
    rungs, batch_size, schedule_exponent); only the ones given, so that the objective's own
    defaults stay the single source, except that a model naming its own feature network
    (``metadata["default_features"]``, "inception" for Stable Diffusion) gets it unless
    ``features`` is given. Raises ConfigurationError for a budget the sampler
    cannot meet, an unknown option, or a model that carries no reference when none is given.
    """
    from skiptune.objectives import ObjectiveConfig, build_objective

    steps_for_nfe(sampler, nfe)        # an unreachable budget fails before any loading
    options = dict(objective_options or {})
    clashing = {"sampler", "nfe", "seed"} & set(options)
    if clashing:
        raise ConfigurationError(
            f"pass {', '.join(sorted(clashing))} to the search itself, not in objective_options"
        )
    if "features" not in options and model.metadata.get("default_features"):
        # A model may name the feature network that suits its images (Inception for Stable
        # Diffusion's); the digit net stays the default for everything else.
        options["features"] = str(model.metadata["default_features"])
    try:
        objective_config = ObjectiveConfig(sampler=sampler, nfe=nfe, seed=seed, **options)
    except TypeError as e:
        raise ConfigurationError(f"unknown objective option: {e}") from None
    space = _space_for(model, space or SearchSpace())
    objective = build_objective(model, objective_config, device=device, cache=cache)
    config = SearchConfig(
        model=str(model.source),
        model_fingerprint=model.fingerprint,
        sampler=sampler,
        nfe=nfe,
        objective=objective_config.to_dict(),
        objective_identity=dict(objective.identity),
        trials=trials,
        optimizer=optimizer,
        space=space,
        seed=seed,
        group=group or default_group(model.source),
        pruning=pruning,
    )
    return config, objective


def _space_for(model: TunableModel, space: SearchSpace) -> SearchSpace:
    """``space`` checked against the model, with its family's FreeU values as a known point.

    The known point is resolved here, once, and stored with the study's space; a user who
    set ``freeu_known`` keeps theirs.
    """
    if space.sigma_window is not None:
        check_sigma_window(*space.sigma_window, model_range=(model.sigma_min, model.sigma_max))
    if not space.searches_freeu:
        return space
    if not model.freeu_stages:
        raise ConfigurationError(
            f"--space {space.kind} needs FreeU stages, and this {model.family} model has none "
            "that skiptune knows; search ρ only (--space rho)"
        )
    if space.freeu_known is not None:
        return space
    family = model.metadata.get("freeu_family")
    if family not in FREEU_DEFAULTS:
        return space        # FreeU's authors recommend values for SD-family models only
    known = FREEU_DEFAULTS[family]
    return dataclasses.replace(space, freeu_known=(known.b1, known.b2, known.s1, known.s2))


def search(
    model: str | Path,
    *,
    nfe: int | Sequence[int],                  # one or several step budgets, one study each
    db: str | Path | Storage | None = None,    # SQLAlchemy URL or path; default ./skiptune.db
    sampler: str = "heun",
    trials: int = 30,
    optimizer: str = "tpe",
    space: SearchSpace | None = None,
    seed: int = 0,
    group: str | None = None,
    pruning: bool = True,
    objective_options: Mapping[str, Any] | None = None,
    device: str | None = None,                 # "auto"/None, "cpu", "cuda", "cuda:N"
    trust_pickle: bool = False,
    conditioning: Mapping[str, Any] | None = None,  # a conditional model's choices, e.g.
                                               # {"class_labels": [3]}; part of the identity
    workers: int = 1,                          # processes on this machine (one per GPU)
    heartbeat_interval: int = 10,              # seconds between a running trial's heartbeats
    grace_period: int = 30,                    # seconds without one before a trial is stale
    on_event: EventCallback | None = None,
    allow_large_rungs: bool = False,           # a rung above MAX_RUNG samples, on purpose
    validation: ValidationSettings | None = None,  # default: top 3 and ρ = 1 at 4 × last rung
    parallel_candidates: int = 1,              # trials sampled together in one batch
) -> list[StudySummary]:
    """Search the skip schedule of ``model`` at each budget in ``nfe``; resume where stored.

    One study per budget, named ``skiptune-<group>-<sampler>-nfe<NFE>``. ``trials`` is the
    total of finished trials (complete, pruned, or failed with non-finite samples) the study
    should reach: rerunning after a crash or Ctrl-C completes it, and a study that already
    has its total returns its summary at once. A stored study searched with other settings
    (weights, metric, seeds, rungs, reference, space...) is refused with ConfigurationError.

    With ``workers`` > 1, that many processes share each study (PostgreSQL or another
    server only; SQLite serialises writers). Progress goes to ``on_event``; nothing is
    printed. Returns one summary per budget, in the order given.

    ``parallel_candidates`` K > 1 asks K trials at once and samples their images in one
    batch with per-sample factors: the same values as K trials in turn, up to float rounding,
    at a GPU's batch throughput. CPU default 1; no GPU default has been measured yet.

    A study at its total is validated (``validation``): its best distinct schedules and
    ρ = 1 are re-scored on fresh seeds, and the summary reports the validated choice.
    """
    validation = validation or ValidationSettings()
    budgets = [nfe] if isinstance(nfe, int) else list(nfe)
    if not budgets or len(set(budgets)) != len(budgets):
        raise ConfigurationError(f"pass one or more distinct step budgets, got {budgets}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigurationError(f"workers must be a whole number ≥ 1, got {workers!r}")
    if (isinstance(parallel_candidates, bool) or not isinstance(parallel_candidates, int)
            or parallel_candidates < 1):
        raise ConfigurationError(
            f"--parallel-candidates must be a whole number ≥ 1, got {parallel_candidates!r}"
        )
    for budget in budgets:
        steps_for_nfe(sampler, budget)
    check_heartbeat(heartbeat_interval, grace_period)
    check_rungs((objective_options or {}).get("rungs"), allowed=allow_large_rungs)
    # Everything that can be checked without the database is checked before it is opened:
    # a mistake then leaves an existing database untouched and creates no new one.
    url = db.url if isinstance(db, Storage) else normalise_url(db)
    if workers > 1 and url.get_backend_name() == "sqlite":
        raise ConfigurationError(
            f"{workers} workers cannot share SQLite ({mask_url(url)}): it lets one "
            "process write at a time; use PostgreSQL, e.g. --db "
            "postgresql+psycopg://user@host/db, or --workers 1"
        )
    device = None if device in (None, "auto") else device
    loaded = load_model(model, device=device, trust_pickle=trust_pickle,
                        conditioning=conditioning)
    # The objectives (and so the reference) are checked against a read-only view of the
    # database; only then is it created or given skiptune's tables.
    reader = db if isinstance(db, Storage) else _read_only(db)
    cache = PendingStatisticsCache(None if reader is None else reader.statistics_cache)
    try:
        plans = [
            plan_search(
                loaded, nfe=budget, sampler=sampler, trials=trials, optimizer=optimizer,
                space=space, seed=seed, group=group, pruning=pruning,
                objective_options=objective_options, device=loaded.device, cache=cache,
            )
            for budget in budgets
        ]
    finally:
        if reader is not None and reader is not db:
            reader.dispose()
    if validation.enabled:
        for config, _objective in plans:
            validation.samples_for(config)     # a too-small validation N, before any write
    storage = db if isinstance(db, Storage) else open_storage(db)
    try:
        cache.flush_into(storage.statistics_cache)
        with _database_errors(storage):
            studies = [prepare_study(storage, config)[0] for config, _objective in plans]
        options: dict[str, Any] = {
            "heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
            "validation": validation, "parallel_candidates": parallel_candidates,
        }
        if workers == 1:
            # Preparing used a pool that the trials never touch (they use Optuna's heartbeat
            # storage); closing it keeps a worker at 4 server connections instead of 6.
            storage.dispose()
            with sigterm_as_interrupt(), _database_errors(storage):
                return _measured([
                    run_study(storage, config, objective, on_event=on_event, **options)
                    for config, objective in plans
                ])
        configs = [config for config, _objective in plans]
        del plans, loaded                      # free the planning copy before workers load theirs
        with sigterm_as_interrupt():
            lost = _run_workers(
                storage, configs, workers=workers, model=str(model), device=device,
                trust_pickle=trust_pickle, conditioning=dict(conditioning or {}), on_event=on_event,
                **options,
            )
        with _database_errors(storage):
            summaries = [summarize(study, config)
                         for study, config in zip(studies, configs, strict=True)]
        _judge_lost_workers(lost, summaries, on_event)
        return _measured(summaries)
    finally:
        if storage is not db:
            # Closing the pools checkpoints SQLite's WAL into the database file, so that a
            # copy of the file alone (no -wal beside it) holds every result.
            storage.dispose()


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


def _measured(summaries: list[StudySummary]) -> list[StudySummary]:
    """The summaries, unless a study finished without one finite measurement.

    Non-finite samples fail a trial as a measurement (this ρ diverges); when every trial
    of a study fails so, ρ = 1 included, the model itself gives NaN or inf, and a table of
    "—" with exit code 0 would hide that.
    """
    for s in summaries:
        if s.done and s.complete == 0 and s.failed > 0 and s.pruned == 0:
            raise NonFiniteSampleError(
                f"every trial of {s.study_name} ({s.failed} of {s.finished}, ρ = 1 included) "
                "sampled NaN or inf: the model itself returns non-finite values; check its "
                "weights and its denoise output, then search again with another --study"
            )
    return summaries


# FID-50k, the field's largest standard N: a rung above it is almost surely a typo (10¹⁰
# samples run for years and their features need terabytes), so it takes an explicit opt-in.
MAX_RUNG = 50_000


def check_rungs(rungs: Sequence[int] | None, *, allowed: bool) -> None:
    """Refuse a rung above :data:`MAX_RUNG` samples unless ``allowed``."""
    largest = max(rungs or (0,), default=0)
    if isinstance(largest, int) and largest > MAX_RUNG and not allowed:
        raise ConfigurationError(
            f"a rung of {largest:,} samples is above {MAX_RUNG:,} (FID-50k, the usual "
            "largest); it would sample for a very long time and hold every image's features "
            "in memory: pass e.g. --rungs 64,256, or --allow-large-rungs if you mean it"
        )


def check_heartbeat(heartbeat_interval: int, grace_period: int) -> None:
    """Refuse a grace period under two heartbeats: live trials would be failed as stale."""
    if grace_period < 2 * heartbeat_interval:
        raise ConfigurationError(
            f"--grace {grace_period} is under two heartbeats (--heartbeat "
            f"{heartbeat_interval}): a running trial would be declared stale between its "
            f"heartbeats and run twice; pass --grace {max(3 * heartbeat_interval, 30)} or more"
        )


def _read_only(db: str | Path | None) -> Storage | None:
    """The database opened read-only, or None where it holds no skiptune tables yet."""
    try:
        return open_storage(db, read_only=True)
    except NoSkiptuneDatabaseError:
        return None


def _worker_device(device: str | None, worker: int) -> str | None:
    """One GPU per worker when the device is left to us and there are several."""
    if device is None and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return f"cuda:{worker % torch.cuda.device_count()}"
    return device


def _worker_main(
    worker: int,
    url: str,
    pool: tuple[int, int],
    configs: list[SearchConfig],
    model: str,
    device: str | None,
    trust_pickle: bool,
    conditioning: dict[str, Any],
    threads: int,
    options: dict[str, Any],
    events: Any,
) -> None:
    """One worker process: load the model, rebuild each study's objective, run the studies.

    Every outcome goes to ``events`` as a tuple (kind, worker, error type, message), so the
    parent can re-raise a worker's SkiptuneError as its own one-line error.
    """
    torch.set_num_threads(threads)
    try:
        signal.signal(signal.SIGTERM, signal.default_int_handler)     # like Ctrl-C, see above
        # Python's own Ctrl-C, not the command line's (which a spawned worker inherits by
        # re-importing the parent's main module, and which is armed only in the parent).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from skiptune.objectives import ObjectiveConfig, build_objective

        storage = open_storage(url, pool_size=pool[0], max_overflow=pool[1])
        loaded = load_model(model, device=_worker_device(device, worker),
                            trust_pickle=trust_pickle, conditioning=conditioning)
        for config in configs:
            if loaded.fingerprint != config.model_fingerprint:
                raise ConfigurationError(
                    f"worker {worker} loaded other weights from {model} than the study's"
                )
            objective = build_objective(
                loaded, ObjectiveConfig.from_dict(config.objective), device=loaded.device,
                cache=storage.statistics_cache,
            )
            differences = config_differences(config.objective_identity, dict(objective.identity))
            if differences:
                raise ConfigurationError(
                    f"worker {worker} measures differently from the study: {', '.join(differences)}"
                )
            with _database_errors(storage):
                run_study(storage, config, objective, worker=worker, on_event=events.put,
                          **options)
        events.put(("done", worker, None, None))
    except KeyboardInterrupt:
        acknowledge_interrupt()            # a later Ctrl-C must not cut this short
        events.put(("interrupted", worker, None, None))
    except SkiptuneError as e:
        events.put(("error", worker, type(e).__name__, str(e)))
    except BaseException as e:
        events.put(("error", worker, "SkiptuneError", f"worker {worker} crashed: {e!r}"))
        raise


def _run_workers(
    storage: Storage,
    configs: list[SearchConfig],
    *,
    workers: int,
    model: str,
    device: str | None,
    trust_pickle: bool,
    conditioning: dict[str, Any],
    on_event: EventCallback | None,
    heartbeat_interval: int,
    grace_period: int,
    validation: ValidationSettings,
    parallel_candidates: int,
) -> dict[int, int | None]:
    """Run the workers; return those that died without a word (worker → exit code).

    A worker's SkiptuneError is raised here as this process's own; Ctrl-C as
    KeyboardInterrupt. A worker that vanished (killed, crashed hard) is returned, for the
    caller to judge by whether the studies reached their totals anyway.
    """
    context = multiprocessing.get_context("spawn")     # CUDA and forked pools do not mix
    events = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    url = storage.url.render_as_string(hide_password=False)
    options = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
               "validation": validation, "parallel_candidates": parallel_candidates}
    storage.dispose()
    processes = [
        context.Process(
            target=_worker_main,
            args=(i, url, (storage.pool_size, storage.max_overflow), configs, model, device,
                  trust_pickle, conditioning, threads, options, events),
            name=f"skiptune-worker-{i}",
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    failure: tuple[str, str] | None = None
    lost: dict[int, int | None] = {}
    interrupted = False
    pending = set(range(workers))
    try:
        while pending:
            try:
                event = events.get(timeout=1.0)
            except queue.Empty:
                dead = [i for i in pending if not processes[i].is_alive()]
                for i in dead:
                    pending.discard(i)
                    if processes[i].exitcode not in (0, None):
                        lost[i] = processes[i].exitcode
                continue
            if isinstance(event, tuple):
                kind, worker, error_type, message = event
                pending.discard(worker)
                if kind == "error" and failure is None:
                    failure = (error_type, message)
                interrupted = interrupted or kind == "interrupted"
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
        events.close()
    if interrupted:
        raise KeyboardInterrupt
    if failure is not None:
        error_type = getattr(errors, failure[0], SkiptuneError)
        if not (isinstance(error_type, type) and issubclass(error_type, SkiptuneError)):
            error_type = SkiptuneError
        raise error_type(failure[1])
    return lost
