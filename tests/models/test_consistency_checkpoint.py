"""skiptune's own consistency checkpoints (``edm-consistency-unet``, what
``python -m skiptune.demo.distill`` writes): they load with the boundary condition, name
``consistency`` as their sampler, and a search with no sampler named tunes them at one step."""

from __future__ import annotations

import copy
from pathlib import Path

import optuna
import pytest
import torch

from skiptune.models import load_model
from skiptune.models.native import save_checkpoint
from skiptune.models.unet import ConsistencyEDMUNet, PreconditionedEDMUNet
from skiptune.sampling import SeededStepNoise, initial_noise, sample
from skiptune.schedule import TuningSchedule
from skiptune.skips import skip_tuning
from skiptune.storage import open_storage
from skiptune.tuner import SearchConfig, ValidationSettings, search
from tests.tuner.helpers import DEMO, TINY


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo U-Net's weights under the consistency scalings, saved as a checkpoint."""
    teacher = load_model(DEMO)
    assert isinstance(teacher.net, PreconditionedEDMUNet)
    net = ConsistencyEDMUNet(copy.deepcopy(teacher.net.unet), sigma_min=0.002)
    path = tmp_path_factory.mktemp("cm") / "student.pt"
    save_checkpoint(path, net, sigma_min=0.002, sigma_max=80.0,
                    metadata={"feature_net": "digit_features.pt",
                              "reference": "mnist_reference.npz"})
    return path


def test_it_loads_as_a_consistency_function_with_its_own_sampler(student: Path) -> None:
    model = load_model(student)
    assert model.default_sampler == "consistency" and model.family == "skiptune"
    x = initial_noise(2, model.noise_shape, seed=0)
    # The boundary condition: f(x; σ_min) = x.
    torch.testing.assert_close(model.denoise(x, torch.full((2,), 0.002)), x)
    # One step is f(σ_max·z; σ_max); ρ = 1 changes nothing, ρ ≠ 1 changes it.
    one = sample(model, x, sampler="consistency", nfe=1,
                 step_noise=SeededStepNoise(2, model.noise_shape, seed=0))
    torch.testing.assert_close(one, model.denoise(x * 80.0, torch.full((2,), 80.0)))
    with skip_tuning(model, TuningSchedule(rho_bottom=1.0, rho_top=1.0)):
        same = sample(model, x, sampler="consistency", nfe=1,
                      step_noise=SeededStepNoise(2, model.noise_shape, seed=0))
    with skip_tuning(model, TuningSchedule(rho_bottom=0.6, rho_top=0.9)):
        other = sample(model, x, sampler="consistency", nfe=1,
                       step_noise=SeededStepNoise(2, model.noise_shape, seed=0))
    assert torch.equal(one, same) and not torch.allclose(one, other)


def test_a_checkpoint_without_its_boundary_is_refused(student: Path, tmp_path: Path) -> None:
    payload = torch.load(student, weights_only=True)
    del payload["config"]["boundary_sigma"]
    broken = tmp_path / "broken.pt"
    torch.save(payload, broken)
    with pytest.raises(Exception, match="boundary_sigma") as info:
        load_model(broken)
    assert "\n" not in str(info.value)


def test_a_search_naming_no_sampler_tunes_it_at_one_and_two_steps(
    student: Path, tmp_path: Path
) -> None:
    db = tmp_path / "cm.db"
    summaries = search(student, SearchConfig(nfe=[1, 2], trials=5, objective=TINY,
                                             validation=ValidationSettings(num_samples=32)),
                       db=db, device="cpu")
    assert [(s.sampler, s.nfe) for s in summaries] == [("consistency", 1), ("consistency", 2)]
    for summary in summaries:
        assert summary.finished == 5 and summary.validated
        study = optuna.load_study(study_name=summary.study_name,
                                  storage=open_storage(db).optuna_storage())
        measured = {(t.params.get("rho_bottom"), t.params.get("rho_top"))
                    for t in study.get_trials(deepcopy=False)}
        assert (0.91, 0.96) in measured             # the paper's CD schedule is a known point
