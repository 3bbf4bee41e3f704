"""One study: create or resume it, queue its baselines once, and run trials until its total.

The loop is Optuna's ask/tell with heartbeats (as ``study.optimize`` runs them), plus what
``optimize`` lacks here: a total shared by every worker, stale trials failed and re-queued
before new work, and the stored front updated after each trial. :class:`StudyRun` is one
worker's run of one study: it holds the storage, the Optuna study, the objective and the
event callback, so that running, judging and re-queueing a trial need only the trial.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from skiptune._failpoints import failpoint
from skiptune._interrupt import acknowledge as acknowledge_interrupt
from skiptune._optuna import quiet_experimental
from skiptune._optuna_private import retried_trial_numbers, retries_of, retry_attrs, trial_id
from skiptune.errors import (
    ConfigurationError,
    InsufficientMemoryError,
    NonFiniteSampleError,
)
from skiptune.objectives import BatchReduced, Evaluation
from skiptune.schedule import TuningSchedule
from skiptune.storage import Storage
from skiptune.tuner.results import StudySummary, summarize
from skiptune.tuner.search._events import (
    BatchSizeReduced,
    EventCallback,
    RungDone,
    StudyDone,
    StudyStarted,
    TrialFinished,
    TrialStarted,
    Waiting,
)
from skiptune.tuner.search._front_writer import update_front
from skiptune.tuner.search._heartbeat import fail_trials_without_heartbeat, heartbeats
from skiptune.tuner.search._objective import Objective
from skiptune.tuner.search._space import (
    grid_size,
    make_pruner,
    make_sampler,
    queued_schedules,
    suggest_schedule,
)
from skiptune.tuner.search._validation import race_if_due, validate_study
from skiptune.tuner.search._warm import warm_schedules
from skiptune.tuner.study import (
    CONFIG_ATTR,
    FAILURE_ATTR,
    FAILURE_KIND_ATTR,
    NUM_SAMPLES_ATTR,
    NUM_SKIPS_ATTR,
    ROLE_ATTR,
    RUNG_VALUES_ATTR,
    SECONDS_ATTRS,
    SEEDED_ATTR,
    SKIP_LAYOUT_ATTR,
    TOTAL_ATTR,
    WARM_ATTR,
    StudyConfig,
    ValidationSettings,
    config_differences,
    describe_differences,
    is_finished,
    role_of,
)

__all__ = [
    "StudyRun",
    "check_stored_study",
    "effective_total",
    "prepare_study",
    "run_study",
]

_MAX_RETRIES = 3     # a trial whose worker dies this often is not re-queued again


def effective_total(config: StudyConfig) -> int:
    """The finished trials the study must reach; the grid optimizer stops at its grid's end."""
    if config.optimizer == "grid":
        return min(config.trials, grid_size(config.space) + len(queued_schedules(config.space)))
    return config.trials


def _is_bare(study: optuna.Study) -> bool:
    """A study created without its configuration yet, with nothing measured in it."""
    return (study.user_attrs.get(CONFIG_ATTR) is None and not study.user_attrs
            and not study.get_trials(deepcopy=False))


def check_stored_study(study: optuna.Study, config: StudyConfig, *, display: str) -> None:
    """Refuse to search ``config`` in the stored ``study`` of the same name: one that
    skiptune did not create, or one searched with other settings. A bare study passes."""
    if _is_bare(study):
        return
    name = config.study_name
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        raise ConfigurationError(
            f"study {name} in {display} was not created by skiptune; pass "
            "another study group (group) or another database",
            field="group",
        )
    requested = config.to_dict()
    differences = config_differences(stored, requested)
    if differences:
        raise ConfigurationError(
            f"study {name} in {display} was searched with other settings "
            f"({describe_differences(stored, requested, differences)}); rerun with the "
            "stored settings, or pass another study group (group NAME) for a separate study",
            field="group",
        )


def prepare_study(
    storage: Storage, config: StudyConfig, *, skip_layout: Sequence[str] | None = None
) -> tuple[optuna.Study, bool]:
    """Create the study of ``config``, or check that the stored one was searched the same way.

    Under the study's lock: create it (or compare the stored configuration and refuse any
    difference), record the total to reach, and queue the baseline and the paper's schedules
    exactly once however many workers start together. ``skip_layout``: the model's skip
    site names, bottom → top, stored so that results name each skip without the model.
    Returns (study, resumed).
    """
    name = config.study_name
    optuna_storage = storage.optuna_storage()
    requested = config.to_dict()
    with storage.lock(f"study:{name}"):
        try:
            study = optuna.load_study(study_name=name, storage=optuna_storage)
            resumed = True
        except KeyError:
            study = optuna.create_study(
                study_name=name, storage=optuna_storage, direction="minimize"
            )
            failpoint("study-created")
            study.set_user_attr(CONFIG_ATTR, requested)
            resumed = False
        if _is_bare(study):
            # Creating the study and storing its configuration are two commits; a process
            # killed between them leaves a bare study that nothing has measured in: finish it.
            study.set_user_attr(CONFIG_ATTR, requested)
            resumed = False
        check_stored_study(study, config, display=storage.display_url)
        study.set_user_attr(TOTAL_ATTR, effective_total(config))
        if skip_layout is not None:
            study.set_user_attr(SKIP_LAYOUT_ATTR, list(skip_layout))
            study.set_user_attr(NUM_SKIPS_ATTR, len(skip_layout))
        known = queued_schedules(config.space)
        if _seeded(study, len(known)) < min(config.trials, len(known)):
            # Only as many as the study's total runs: a queued point past it would stay a
            # waiting trial for good. A rerun with more trials queues the next ones.
            for params, role in known[:config.trials]:
                # Each enqueue is its own commit: after a kill midway, the rerun queues only
                # the schedules still missing, so none is measured twice.
                study.enqueue_trial(params, user_attrs={ROLE_ATTR: role}, skip_if_exists=True)
                failpoint("study-seeding")
            study.set_user_attr(SEEDED_ATTR, min(config.trials, len(known)))
        if not study.user_attrs.get(WARM_ATTR):
            # Once, at the study's first preparation: the validated bests of the same model's
            # other budgets, nearest first (a later rerun does not queue newer ones), in the
            # trials the known points leave.
            sources = []
            slots = max(0, config.trials - len(known))
            for params, source in warm_schedules(optuna_storage, config)[:slots]:
                study.enqueue_trial(params, user_attrs={ROLE_ATTR: "warm"}, skip_if_exists=True)
                sources.append(source)
            study.set_user_attr(WARM_ATTR, sources or [""])
    storage.record_run(
        study_name=name,
        study_group=config.group,
        model_fingerprint=config.model_fingerprint,
        model_path=config.model,
        sampler=config.sampler,
        nfe=config.nfe,
        objective_identity=config.objective_identity,
        config=requested,
    )
    return study, resumed


def _seeded(study: optuna.Study, known: int) -> int:
    """How many of the ``known`` queued points the study has queued (``True``: all of them,
    as studies stored before the queue followed the total say)."""
    seeded = study.user_attrs.get(SEEDED_ATTR)
    return known if seeded is True else int(seeded or 0)


def _requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue a failed trial's parameters again (its role kept), as the stale-trial retry does.

    A trial stopped between two ``suggest`` calls recorded only some parameters; a queued
    one (baseline, paper schedule) keeps its whole schedule in ``fixed_params``, carried
    over so that the retry runs the schedule the failed trial was given, not a part of it.
    """
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={k: v for k, v in trial.user_attrs.items() if k == ROLE_ATTR},
            system_attrs=dict(retry_attrs(trial)),
        )
    )


def _counts(study: optuna.Study) -> tuple[int, int]:
    trials = study.get_trials(deepcopy=False)
    finished = sum(is_finished(t) for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return finished, running


# Failures that are not measurements: the trial is run again (stale trials carry no kind).
_RETRIED_KINDS = (None, "interrupted", "out-of-memory")


def _ignore(_event: object) -> None:
    """The event callback of a run nobody watches."""


class StudyRun:
    """One worker's run of one study: its storage, Optuna study, objective and event callback.

    Build it with :meth:`open` once the study exists (:func:`prepare_study`), then call
    :meth:`run`. The methods below run one trial or a batch, judge an evaluation's outcome
    and fail or re-queue trials; each needs only the trials it acts on.
    """

    def __init__(
        self,
        storage: Storage,
        config: StudyConfig,
        objective: Objective,
        study: optuna.Study,
        optuna_storage: Any,
        *,
        worker: int,
        heartbeat_interval: int,
        grace_period: int,
        emit: EventCallback,
        sleep: Callable[[float], None],
        parallel_candidates: int,
    ) -> None:
        self.storage = storage
        self.config = config
        self.objective = objective
        self.study = study
        self.optuna_storage = optuna_storage
        self.worker = worker
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.emit = emit
        self.sleep = sleep
        self.parallel_candidates = parallel_candidates
        self.total = effective_total(config)

    @classmethod
    def open(
        cls,
        storage: Storage,
        config: StudyConfig,
        objective: Objective,
        *,
        worker: int = 0,                         # index of this worker (seeds its optimizer)
        heartbeat_interval: int = 10,            # seconds between a running trial's heartbeats
        grace_period: int = 30,                  # seconds without one before a trial is stale
        on_event: EventCallback | None = None,
        sleep: Callable[[float], None] = time.sleep,
        parallel_candidates: int = 1,            # trials asked at once and sampled in one batch
    ) -> StudyRun:
        """Load ``config``'s study through Optuna's heartbeat storage, with its sampler and
        pruner, for one worker to run."""
        with quiet_experimental():
            optuna_storage = storage.optuna_storage(
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=_MAX_RETRIES),
            )
        study = optuna.load_study(
            study_name=config.study_name,
            storage=optuna_storage,
            sampler=make_sampler(config, worker=worker),
            pruner=make_pruner(config),
        )
        return cls(storage, config, objective, study, optuna_storage, worker=worker,
                   heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                   emit=on_event or _ignore, sleep=sleep,
                   parallel_candidates=parallel_candidates)

    @property
    def name(self) -> str:
        return self.study.study_name

    def run(self, validation: ValidationSettings | None = None) -> StudySummary:
        """Run trials until the study has its total, validate it, and bring its front level.

        See :func:`run_study`, which builds the run and calls this.
        """
        settings = validation or ValidationSettings()
        first = True
        while True:
            asked: list[optuna.Trial] = []
            try:
                finished, running = self.ask(asked, announce=first)
                first = False
                if finished >= self.total:
                    break
                if not asked:
                    self.emit(Waiting(study_name=self.name, running=running,
                                      seconds=float(self.heartbeat_interval),
                                      worker=self.worker))
                    self.sleep(self.heartbeat_interval)
                    continue
                self.run_asked(asked, finished=finished)
            except KeyboardInterrupt:
                # Wherever it lands once a trial is asked (its suggestion, its heartbeat, its
                # tell), every asked trial not yet told is failed and queued again.
                self.requeue_interrupted(asked)
                raise
            # Every trial asked is told: a race at a checkpoint passed just now (a Ctrl-C
            # during it keeps what it measured, and the rerun races again from there).
            race_if_due(self.storage, self.study, self.config, self.objective, settings,
                        total=self.total, worker=self.worker, emit=self.emit)
        if settings.enabled:
            validate_study(self.storage, self.study, self.config, self.objective, settings,
                           total=self.total, worker=self.worker, emit=self.emit)
        # A worker killed between a trial's tell and its front update leaves the stored front
        # behind the trials; the study's end (also a rerun that finds it done) brings it level.
        update_front(self.storage, self.study, self.config)
        summary = summarize(self.study, self.config)
        self.emit(StudyDone(study_name=self.name, summary=summary, worker=self.worker))
        return summary

    def run_asked(self, asked: list[optuna.Trial], *, finished: int) -> None:
        """Run the trials asked together: in one batch where they can share it, else in turn."""
        schedules = [suggest_schedule(t, self.config.space) for t in asked]
        if len(asked) > 1 and not any(s.samples_alone for s in schedules):
            self.run_batch(asked, schedules, finished=finished)
            return
        with contextlib.ExitStack() as waiting:
            # Trials asked together but run in turn keep beating while they wait.
            for trial in asked[1:]:
                waiting.enter_context(heartbeats(self.optuna_storage, trial))
            for trial in asked:
                self.run_trial(trial, finished=finished)

    def ask(self, asked: list[optuna.Trial], *, announce: bool) -> tuple[int, int]:
        """(finished, running): under the study's lock, fail stale trials and re-queue lost
        retries, then ask as many trials as free slots allow (none at the total), each added
        to ``asked`` as soon as it is RUNNING."""
        config, study, worker = self.config, self.study, self.worker
        with self.storage.lock(f"study:{self.name}"):
            with quiet_experimental():
                optuna.storages.fail_stale_trials(study)
                fail_trials_without_heartbeat(study, self.storage, self.optuna_storage,
                                              self.grace_period)
            self.requeue_lost_retries()
            finished, running = _counts(study)
            if announce:
                self.emit(StudyStarted(study_name=self.name, nfe=config.nfe,
                                       sampler=config.sampler, trials_total=self.total,
                                       finished=finished, resumed=finished > 0 or running > 0,
                                       worker=worker))
            slots = min(max(1, self.parallel_candidates), self.total - finished - running)
            if finished < self.total and slots > 0:
                with warnings.catch_warnings():
                    # Optuna warns that heartbeats are meant for optimize(); this loop is
                    # optimize()'s ask/tell with a heartbeat thread (_heartbeats) per trial.
                    warnings.filterwarnings("ignore", message="Heartbeat of storage")
                    for _ in range(slots):
                        # Seeded by the history, so a resumed study proposes what an
                        # uninterrupted one would, not its first run's proposals again.
                        study.sampler = make_sampler(
                            config, worker=worker,
                            history=len(study.get_trials(deepcopy=False)),
                        )
                        trial = study.ask()
                        asked.append(trial)
                        failpoint("trial-asked")
                        # A first heartbeat before the lock is released: a worker killed
                        # right now leaves a trial that goes stale, never one that stays
                        # RUNNING for ever (one killed just before it is caught by
                        # fail_trials_without_heartbeat).
                        self.optuna_storage.record_heartbeat(trial_id(trial))
        return finished, running

    def requeue_lost_retries(self) -> None:
        """Queue again a failed trial whose retry was lost, so that no schedule goes unmeasured.

        Failing a stale or interrupted trial and queueing its retry are two writes; a worker
        killed between them leaves a failed trial that nothing re-runs (the baseline, say).
        Call under the study's lock, where trials are failed and queued.
        """
        trials = self.study.get_trials(deepcopy=False)
        retried = retried_trial_numbers(trials)
        for trial in trials:
            if (
                trial.state == TrialState.FAIL
                and trial.number not in retried
                and trial.user_attrs.get(FAILURE_KIND_ATTR) in _RETRIED_KINDS
                and retries_of(trial) < _MAX_RETRIES
            ):
                _requeue(self.study, trial)

    def rung_reporter(self, trial: optuna.Trial) -> Callable[[int, int, float], None]:
        """``report(rung_index, N, value)`` for the objective: tell the pruner, emit RungDone,
        and stop a trial the pruner rejects."""
        last_rung = len(self.config.rungs) - 1
        role = role_of(trial)

        def report(rung_index: int, num_samples: int, value: float) -> None:
            trial.report(value, num_samples)
            self.emit(RungDone(study_name=self.name, trial_number=trial.number,
                               rung_index=rung_index, num_samples=num_samples, value=value,
                               worker=self.worker))
            # The baseline is asked too, so the pruner counts it at each rung, but it is never
            # stopped: every study must measure its own baseline at full N.
            stop = rung_index < last_rung and self.config.pruning and trial.should_prune()
            if stop and role != "baseline":
                raise optuna.TrialPruned(
                    f"pruned after rung {rung_index} (N = {num_samples}, value {value:.4g})"
                )

        return report

    def run_trial(self, trial: optuna.Trial, *, finished: int) -> None:
        """Evaluate one trial's schedule, with heartbeats, and tell its outcome."""
        schedule = suggest_schedule(trial, self.config.space)
        self.announce(trial, schedule, finished=finished)
        report = self.rung_reporter(trial)

        start = time.monotonic()
        with heartbeats(self.optuna_storage, trial):
            try:
                state, value, reason = _judged(trial, lambda: self.objective.evaluate(
                    schedule, report=report, on_batch_reduced=self.batch_reducer([trial])))
                if state == TrialState.COMPLETE:
                    failpoint("trial-result")       # measured and recorded, not yet told
            except KeyboardInterrupt:
                raise                      # failed and queued again by run(), with the others
            except InsufficientMemoryError as e:
                self.requeue_out_of_memory([trial], e)
                raise
            except BaseException as e:
                self.fail_with_error([trial], e)
                raise
        self.finish(trial, state=state, value=value, reason=reason, schedule=schedule,
                    seconds=time.monotonic() - start)

    def run_batch(self, trials: list[optuna.Trial], schedules: list[TuningSchedule], *,
                  finished: int) -> None:
        """Run several trials with their images sampled in one batch (``evaluate_many``)."""
        for i, (trial, schedule) in enumerate(zip(trials, schedules, strict=True)):
            self.announce(trial, schedule, finished=finished + i)
        reporters = [self.rung_reporter(t) for t in trials]

        def report(candidate: int, rung_index: int, num_samples: int, value: float) -> None:
            reporters[candidate](rung_index, num_samples, value)

        start = time.monotonic()
        with contextlib.ExitStack() as beating:
            for trial in trials:
                beating.enter_context(heartbeats(self.optuna_storage, trial))
            try:
                outcomes = self.objective.evaluate_many(
                    schedules, report=report, on_batch_reduced=self.batch_reducer(trials))
            except KeyboardInterrupt:
                raise                      # failed and queued again by run(), with the others
            except InsufficientMemoryError as e:
                self.requeue_out_of_memory(trials, e)
                raise
            except BaseException as e:
                self.fail_with_error(trials, e)
                raise
        seconds = time.monotonic() - start
        for trial, schedule, outcome in zip(trials, schedules, outcomes, strict=True):
            state, value, reason = _judged(trial, functools.partial(_returned, outcome))
            self.finish(trial, state=state, value=value, reason=reason, schedule=schedule,
                        seconds=seconds / len(trials))

    def batch_reducer(self, trials: list[optuna.Trial]) -> BatchReduced:
        """``on_batch_reduced`` for the objective: one BatchSizeReduced event per trial that
        shared the batch that ran out of memory."""
        def batch_reduced(failed: int, batch_size: int, why: str) -> None:
            for trial in trials:
                self.emit(BatchSizeReduced(study_name=self.name, trial_number=trial.number,
                                           failed=failed, batch_size=batch_size, reason=why,
                                           worker=self.worker))

        return batch_reduced

    def announce(self, trial: optuna.Trial, schedule: TuningSchedule, *, finished: int) -> None:
        self.emit(TrialStarted(study_name=self.name, trial_number=trial.number,
                               schedule=schedule.to_dict(), role=role_of(trial),
                               finished=finished, trials_total=self.total, worker=self.worker))

    def finish(self, trial: optuna.Trial, *, state: TrialState, value: float | None,
               reason: str, schedule: TuningSchedule, seconds: float) -> None:
        """Tell the trial's end, update the stored front, and report it."""
        told = _tell(self.study, trial, state=state,
                     value=value if state == TrialState.COMPLETE else None)
        failpoint("trial-told")
        if not told:
            state, reason = TrialState.FAIL, "declared stale by another worker and re-queued"
        if state == TrialState.COMPLETE:
            update_front(self.storage, self.study, self.config)
        summary = summarize(self.study, self.config)
        self.emit(
            TrialFinished(
                study_name=self.name,
                trial_number=trial.number,
                state={TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(
                    state, "failed"
                ),
                value=value,
                schedule=schedule.to_dict(),
                best_value=summary.best_value,
                baseline_value=summary.baseline_value,
                finished=summary.finished,
                trials_total=self.total,
                seconds=seconds,
                reason=reason,
                worker=self.worker,
            )
        )

    def requeue_interrupted(self, trials: list[optuna.Trial]) -> None:
        """Ctrl-C: fail the running trials and queue them again, as one step under the lock."""
        if not trials:
            return                         # landed while waiting or at the total: nothing asked
        acknowledge_interrupt()            # a later Ctrl-C must not cut this short
        with self.storage.lock(f"study:{self.name}"):
            for trial in trials:
                self.fail_and_requeue(trial, "interrupted (Ctrl-C)", "interrupted")

    def requeue_out_of_memory(
        self, trials: list[optuna.Trial], error: InsufficientMemoryError
    ) -> None:
        """Not even one image fits: the schedules are fine, the device is not, so queue them
        again for a rerun elsewhere (the baseline above all, which every study must measure)."""
        with self.storage.lock(f"study:{self.name}"):
            for trial in trials:
                self.fail_and_requeue(trial, str(error)[:2000], "out-of-memory")

    def fail_with_error(self, trials: list[optuna.Trial], error: BaseException) -> None:
        """An unexpected error: the trials fail with it (not re-queued) before it propagates."""
        reason = f"{type(error).__name__}: {error}"[:2000]
        for trial in trials:
            trial.set_user_attr(FAILURE_ATTR, reason)
            trial.set_user_attr(FAILURE_KIND_ATTR, "error")
            _tell(self.study, trial, state=TrialState.FAIL)

    def fail_and_requeue(self, trial: optuna.Trial, reason: str, kind: str) -> None:
        """Fail the trial with ``reason`` and queue its parameters again (call under the lock)."""
        try:
            trial.set_user_attr(FAILURE_ATTR, reason)
            trial.set_user_attr(FAILURE_KIND_ATTR, kind)
        except optuna.exceptions.UpdateFinishedTrialError:
            return
        if _tell(self.study, trial, state=TrialState.FAIL):
            _requeue(self.study, self.optuna_storage.get_trial(trial_id(trial)))


def run_study(
    storage: Storage,
    config: StudyConfig,
    objective: Objective,
    *,
    validation: ValidationSettings | None = None,   # default: ValidationSettings()
    **options: Any,                          # how to run: :meth:`StudyRun.open`'s keywords
) -> StudySummary:
    """Run trials of ``config``'s study until it has ``effective_total(config)`` finished.

    ``options`` are :meth:`StudyRun.open`'s: ``worker``, ``heartbeat_interval``,
    ``grace_period`` (seconds), ``on_event``, ``sleep`` and ``parallel_candidates``.

    The study must exist (:func:`prepare_study`). Several workers may run this on one study
    at once: asking for a trial is serialised by the study's lock, so the total is exact.
    Trials left RUNNING by a dead worker go stale after ``grace_period`` seconds without a
    heartbeat; they are then failed and their parameters re-queued before any new trial.
    When every remaining slot is held by a running trial, this worker waits for it.

    A trial with non-finite samples is failed with the reason (user attribute ``failure``)
    and the study goes on; any other error fails the trial and propagates. On
    KeyboardInterrupt (a Ctrl-C, SIGTERM or SIGHUP) every trial asked and not yet told is
    failed and re-queued, wherever the interrupt landed, and the interrupt propagates.

    With ``parallel_candidates`` K > 1, K trials are asked at once (the constant liar keeps
    them apart, as with workers) and their images sampled in one batch with per-sample
    factors (``evaluate_many``); σ-window and step-grid schedules run one at a time.

    Unless ``validation.enabled`` is False, the study races on fresh seed blocks at 10, 20,
    40, … finished trials and at its total (:mod:`._racing`, :func:`validate_study`): its
    answer is the incumbent that beat its challengers there, not its lowest search value. A
    study that reached its total before, validated or not, is validated now, resuming what
    is missing.
    """
    return StudyRun.open(storage, config, objective, **options).run(validation)


def _judged(trial: optuna.Trial, evaluate: Callable[[], Evaluation]
            ) -> tuple[TrialState, float | None, str]:
    """(state, value, reason) of a trial whose evaluation ``evaluate()`` returns or raises.

    Pruning and non-finite samples are outcomes of the schedule; anything else propagates.
    """
    try:
        return TrialState.COMPLETE, _record_evaluation(trial, evaluate()), ""
    except optuna.TrialPruned as e:
        return TrialState.PRUNED, None, str(e)
    except NonFiniteSampleError as e:
        reason = f"non-finite samples: {e}"
        trial.set_user_attr(FAILURE_ATTR, reason)
        trial.set_user_attr(FAILURE_KIND_ATTR, "non-finite")
        return TrialState.FAIL, None, reason


def _record_evaluation(trial: optuna.Trial, evaluation: Evaluation) -> float:
    """The evaluation's value, its N, rung values and timings stored with the trial."""
    value = float(evaluation.value)
    if not math.isfinite(value):
        raise NonFiniteSampleError(f"the objective returned {value}")
    trial.set_user_attr(NUM_SAMPLES_ATTR, int(evaluation.num_samples))
    trial.set_user_attr(RUNG_VALUES_ATTR, [list(rv) for rv in evaluation.rung_values])
    for attr in SECONDS_ATTRS:
        trial.set_user_attr(attr, float(getattr(evaluation, attr)))
    return value


def _returned(outcome: Evaluation | BaseException) -> Evaluation:
    """A batched candidate's outcome as its own evaluation would give it: returned or raised."""
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _tell(
    study: optuna.Study, trial: optuna.Trial, *, state: TrialState, value: float | None = None
) -> bool:
    """Tell the trial's end; False if it had already been failed as stale by another worker."""
    try:
        if state == TrialState.COMPLETE:
            study.tell(trial, value)
        else:
            study.tell(trial, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    except ValueError as e:
        if "finished" in str(e).lower():
            return False
        raise
    return True
