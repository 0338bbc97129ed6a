"""A sweep's search space: the YAML a user writes, checked against the classifier's bounds, one line per
mistake naming the key; the grid it spans; the request that carries it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.contract import BadOption, SweepRequest, check_classifier_value
from shared.search_space import SpaceError, default_space, grid, normalise, read_space


def space_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_a_written_space_is_normalised_with_its_scales_and_types(tmp_path: Path) -> None:
    path = space_file(
        tmp_path,
        "learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\nbatch_size: [16, 32]\nweights: none\n"
        "augment: {low: 0, high: 2, step: 0.5}\nepochs: {low: 2, high: 6, step: 2}\n"
        "backbone: [resnet18, densenet121]\n",
    )
    space = normalise(read_space(path), check_classifier_value)
    assert space["learning_rate"] == {"low": 1e-4, "high": 1e-2, "log": True, "step": None}
    assert space["batch_size"] == {"choices": [16, 32]}
    assert space["weights"] == {"choices": ["none"]}
    assert space["augment"]["low"] == 0.0 and isinstance(space["augment"]["low"], float)
    assert space["epochs"] == {"low": 2, "high": 6, "log": False, "step": 2}
    assert space["backbone"] == {"choices": ["resnet18", "densenet121"]}


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("lr: [0.1]\n", "lr: not a setting"),
        ("learning_rate: {low: 0.01, high: 0.001}\n", "learning_rate: low (0.01) must be below high"),
        ("weight_decay: {low: 0, high: 0.1, log: true}\n", "weight_decay: a log range needs low above 0"),
        ("learning_rate: {low: -1, high: 0.1}\n", "learning_rate.low: Input should be greater than 0"),
        ("batch_size: [1, 8]\n", "batch_size.choices: Input should be greater than or equal to 2"),
        ("batch_size: {low: 8.5, high: 16}\n", "batch_size.low: 8.5 is not a whole number"),
        ("input: [image, mask]\n", "input.choices: Input should be 'image' or 'image+seg'"),
        ("input: {low: 1, high: 2}\n", "input: a text setting takes choices"),
        ("backbone: [resnet18, vgg16]\n", "backbone.choices: Input should be 'resnet18', 'resnet50'"),
        ("weight_decay: {choices: []}\n", "weight_decay: give `choices` a non-empty list"),
        ("weight_decay: {low: 0, hgih: 1}\n", "weight_decay: a range is {low: ..., high: ...}"),
        ("batch_size: [8, 8]\n", "batch_size.choices: a value appears twice"),
        ("augment: {low: 0, high: 9}\n", "augment.high: Input should be less than or equal to 3"),
    ],
)
def test_a_bad_space_is_one_line_naming_the_key(tmp_path: Path, text: str, names: str) -> None:
    with pytest.raises(BadOption) as refused:
        SweepRequest.build(space=read_space(space_file(tmp_path, text)))
    assert refused.value.option == "--space"
    assert names in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("learning_rate: [0.1\n", "at line 2"),
        ("- 1\n- 2\n", "write a mapping of settings"),
        ("", "write a mapping of settings"),
    ],
)
def test_a_file_that_is_no_space_is_named(tmp_path: Path, text: str, says: str) -> None:
    path = space_file(tmp_path, text)
    with pytest.raises(SpaceError, match=says) as refused:
        read_space(path)
    assert str(path) in str(refused.value)


def test_an_oversized_or_missing_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="over 64 KiB"):
        read_space(space_file(tmp_path, "#" * 70_000))
    with pytest.raises(SpaceError, match="No such file"):
        read_space(tmp_path / "absent.yaml")


def test_the_grid_spans_choices_and_steps_and_sets_the_number_of_trials() -> None:
    request = SweepRequest.build(space={"batch_size": [16, 32], "learning_rate": [1e-3, 3e-3, 1e-2]}, sampler="grid")
    assert request.trials == 6
    assert {(p["batch_size"], p["learning_rate"]) for p in request.grid} == {
        (b, lr) for b in (16, 32) for lr in (1e-3, 3e-3, 1e-2)
    }
    stepped = normalise({"epochs": {"low": 1, "high": 5, "step": 2}}, check_classifier_value)
    assert [point["epochs"] for point in grid(stepped)] == [1, 3, 5]
    with pytest.raises(BadOption, match="the grid sampler needs choices or a step"):
        SweepRequest.build(space={"learning_rate": {"low": 1e-4, "high": 1e-2}}, sampler="grid")
    with pytest.raises(BadOption, match="the grid has 2 points") as refused:
        SweepRequest.build(space={"batch_size": [16, 32]}, sampler="grid", trials=5)
    assert refused.value.option == "--trials"


def test_image_seg_in_the_space_needs_the_run_that_gives_the_map() -> None:
    with pytest.raises(BadOption) as refused:
        SweepRequest.build(space={"input": ["image", "image+seg"]})
    assert refused.value.option == "--seg-run"
    assert SweepRequest.build(space={"input": ["image", "image+seg"]}, seg_run=3).seg_run == 3


def test_a_trial_is_the_sweeps_settings_with_its_sampled_ones() -> None:
    request = SweepRequest.build(space=default_space(["image"], ["none"]), epochs=4, seed=7, val_fraction=0.2)
    assert SweepRequest.parse(request.params()) == request
    trial = request.trial_request({"learning_rate": 2e-3, "batch_size": 32, "augment": 0.5})
    assert (trial.epochs, trial.seed, trial.val_fraction) == (4, 7, 0.2)
    assert (trial.learning_rate, trial.batch_size, trial.augment, trial.weight_decay) == (2e-3, 32, 0.5, 1e-4)
