"""A cohort's categories onto the model's: by name, renamed with --categories, or refused by name."""

from __future__ import annotations

import click
import numpy as np
import pytest

from services.dispatcher.inputs import category_map
from shared.errors import InputError
from workers.evaluate.cohort import model_numbers


def test_categories_by_name_or_renamed() -> None:
    assert list(model_numbers(["plate", "fracture"], {}, ["fracture", "plate"])) == [0, 2, 1]
    assert list(model_numbers(["Break", "Crack"], {"Break": "fracture", "Crack": "fracture"}, ["fracture"])) == [
        0, 1, 1,
    ]  # fmt: skip
    assert model_numbers(["fracture"], {}, ["fracture"]).dtype == np.uint8


def test_an_unknown_category_is_refused_by_name() -> None:
    with pytest.raises(InputError, match=r"the cohort's category 'Break' is not one the model knows \(fracture\)"):
        model_numbers(["Break"], {}, ["fracture"])
    with pytest.raises(InputError, match="'Break' is not one the model knows"):
        model_numbers(["Break"], {"Break": "fractur"}, ["fracture"])
    with pytest.raises(InputError, match="--categories maps 'Crack', which is not among the cohort's categories"):
        model_numbers(["Break"], {"Crack": "fracture", "Break": "fracture"}, ["fracture"])


def test_the_option_is_parsed_into_names_and_renames() -> None:
    assert category_map(None) == (None, {})
    assert category_map("Break=fracture, plate") == (["Break", "plate"], {"Break": "fracture"})
    with pytest.raises(click.BadParameter, match="write NAME or COHORT_NAME=MODEL_NAME"):
        category_map("Break=")
