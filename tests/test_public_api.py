"""What a user's script imports from ``skiptune`` itself: the headline operations and types."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest

import skiptune

HEADLINE = ("load_model", "skip_tuning", "sample", "search", "best_schedule", "export_schedule",
            "load_exported", "TuningSchedule", "SearchConfig", "SearchSpace", "ObjectiveSettings",
            "ObjectiveConfig", "SkiptuneError")
README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_public_name_resolves() -> None:
    for name in skiptune.__all__:
        assert getattr(skiptune, name) is not None, name


def test_the_headline_operations_are_public() -> None:
    assert set(HEADLINE) <= set(skiptune.__all__)
    assert skiptune.search is skiptune.tuner.search


def test_the_schedules_former_name_still_imports() -> None:
    from skiptune.schedule import RhoSchedule, TuningSchedule

    assert skiptune.RhoSchedule is RhoSchedule is TuningSchedule
    assert "RhoSchedule" not in skiptune.__all__


def test_the_readmes_search_script_builds_the_configuration_it_describes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (script,) = [block for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
                 if "skiptune.search(" in block]
    received: dict[str, Any] = {}

    def search(model: str, config: skiptune.SearchConfig, **where: Any) -> list[Any]:
        received.update(model=model, config=config, **where)
        return []

    monkeypatch.setattr(skiptune, "search", search)
    exec(compile(script, str(README), "exec"), {})    # the README's own text, as printed
    config = received["config"]
    assert config.budgets == (5, 9) and config.trials == 30
    assert config.space.rho_top == 1.0 and config.objective.rungs == (64, 256)
    assert received["db"] == "skiptune.db"
    assert (Path(__file__).resolve().parents[1] / received["model"]).is_file()


# Each package's public names, pinned: a name added or dropped is a decision, made here too.
PUBLIC = {
    "skiptune": (
        "ConfigurationError", "ExportedSchedule", "FreeU", "ObjectiveConfig",
        "ObjectiveSettings", "TuningSchedule", "SearchConfig", "SearchSpace", "SkiptuneError",
        "TunableModel", "ValidationSettings", "__version__", "best_schedule",
        "export_schedule", "front_report", "initial_noise", "list_studies", "load_exported",
        "load_model", "sample", "search", "skip_tuning"),
    "skiptune.models": (
        "Condition", "Conditioner", "EDMUNet", "FreeUStage", "PreconditionedEDMUNet",
        "SkipSite", "TunableModel", "UNetConfig", "condition_size", "condition_to",
        "fingerprint_state_dict", "load_model", "resolve_device", "save_checkpoint",
        "not_images_reason"),
    "skiptune.models.edm": (
        "EDMPrecond", "UnsafeSnapshotError", "VEPrecond", "VPPrecond", "iDDPMPrecond", "load",
        "looks_like_edm_snapshot", "wrap_network"),
    "skiptune.sampling": (
        "SAMPLERS", "Denoiser", "Sampler", "SamplerCallback", "SamplerSpec", "SamplingModel",
        "ddim", "ddim_sigmas", "dpmpp_2m", "euler", "get_sampler", "heun", "initial_noise",
        "karras_sigmas", "nfe_for_steps", "sample", "sample_images", "save_images",
        "sigma_grid", "steps_for_nfe", "unipc", "write_samples",
        "MAX_SEED", "grid_sigmas", "ipndm", "SeededStepNoise", "StepNoise", "StochasticSampler",
        "consistency", "dpmpp_2m_sde", "edm_stochastic", "euler_ancestral", "lcm_sigmas"),
    "skiptune.objectives": (
        "DEFAULT_FEATURE_NET_PATH", "METRICS", "BatchReduced", "CandidateReport",
        "DigitFeatureNet", "DirectoryStatisticsCache", "Evaluation", "FeatureExtractor",
        "FeatureNetConfig", "Metric", "ObjectiveConfig", "ObjectiveSettings", "ProxyObjective",
        "ReferenceProgress", "ReferenceStatistics", "RungReport", "StatisticsCache",
        "bootstrap_indices", "bootstrap_values", "build_objective", "check_disjoint_seeds",
        "frechet_distance_to_features", "gaussian_statistics", "get_metric",
        "is_self_reference", "load_feature_extractor", "load_reference",
        "paired_gain_interval", "parse_self_reference", "save_feature_net"),
    "skiptune.tuner": (
        "BatchSizeReduced", "CandidateValidated", "EventCallback", "FrontReport", "Note",
        "ReferenceSampled", "RungDone", "SearchConfig", "SearchEvent", "SearchSpace",
        "StudyConfig", "StudyDone", "StudyStarted", "StudySummary", "TrialFinished",
        "TrialStarted", "ValidationResult", "ValidationSettings", "Waiting", "WorkerLost",
        "best_schedule", "export_schedule", "front_report", "list_studies", "pareto_front",
        "plot_front", "quiet_optuna", "search", "speed_claims", "validation_result",
        "best_per_budget", "serve_dashboard", "write_report"),
    "skiptune.tuner.study": (
        "CONFIG_ATTR", "FAILURE_ATTR", "FAILURE_KIND_ATTR", "NUM_SAMPLES_ATTR", "OPTIMIZERS",
        "RACE_ATTR", "ROLE_ATTR", "RUNG_VALUES_ATTR", "SECONDS_ATTRS", "SEEDED_ATTR",
        "TOTAL_ATTR", "VALIDATION_ATTR", "WARM_ATTR", "SearchConfig", "SearchSpace", "StudyConfig",
        "ValidatedCandidate", "ValidationResult", "ValidationSettings", "candidate_attr",
        "canonical_schedule", "comparison_key", "config_differences", "default_group",
        "describe_differences", "is_finished", "role_of", "schedule_from_params",
        "study_name", "validation_result", "value_of",
        "GRID_ATTR", "GRID_PREFIX", "NUM_SKIPS_ATTR", "grid_artifacts", "SKIP_LAYOUT_ATTR"),
    "skiptune.tuner.search": (
        "PAPER_SCHEDULES", "BatchSizeReduced", "CandidateValidated", "EventCallback", "Note",
        "Objective", "ReferenceSampled", "RungDone", "SearchEvent", "StudyDone", "StudyRun",
        "StudyStarted", "TrialFinished", "TrialStarted", "Waiting", "WorkerLost",
        "plan_study", "prepare_study", "queued_schedules", "resolve_objective", "run_study",
        "search", "RaceState", "SeedBlocks", "race", "race_checkpoints"),
    "skiptune.tuner.results": (
        "PLOT_SUFFIXES", "FrontPoint", "FrontReport", "SpeedClaim", "StudySummary",
        "best_and_baseline", "best_schedule", "describe_claim", "export_schedule",
        "front_report", "list_studies", "pareto_front", "pareto_mask", "plot_front",
        "quiet_optuna", "speed_claims", "stored_studies", "summarize",
        "best_per_budget", "serve_dashboard", "write_report",
        "front_flags", "gain_established", "gain_text", "interval_text", "measured_on",
        "percent"),
    "skiptune.storage": (
        "DEFAULT_DB", "SCHEMA_VERSION", "DatabaseStatisticsCache", "FrontRecord",
        "NoSkiptuneDatabaseError", "PendingStatisticsCache", "RunRecord", "Storage",
        "mask_url", "normalise_url", "open_storage", "skiptune_version",
        "artifact_folder"),
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_each_package_publishes_exactly_its_pinned_names(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PUBLIC[package])
    assert len(set(module.__all__)) == len(module.__all__), "a name is listed twice"
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.{name} does not resolve"


def test_names_left_out_of_skiptune_are_still_importable_where_they_live() -> None:
    from skiptune.errors import InsufficientMemoryError
    from skiptune.models.custom import wrap_module
    from skiptune.sampling import SAMPLERS

    assert skiptune.InsufficientMemoryError is InsufficientMemoryError   # and, for old scripts,
    assert skiptune.wrap_module is wrap_module                           # from skiptune too
    assert skiptune.SAMPLERS is SAMPLERS
    assert len(skiptune.__all__) <= 22
