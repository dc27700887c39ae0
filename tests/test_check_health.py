"""A check that could not test anything: a yellow WARN result, never a green pass, and it neither
stops downstream steps in the run nor holds downstream automation."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from assets.checks import blocking_specs, check_results
from orchestration.check_gate import ALL_DEPS_BLOCKING_CHECKS_NOT_FAILED
from ragline.expectations import NDCG_HAS_NOT_REGRESSED, CheckOutcome

FIRST_RUN = CheckOutcome(
    NDCG_HAS_NOT_REGRESSED,
    True,
    {"compared": 0, "confidence": 0.95, "min_effect": 0.02},
    untested="compared 0: first partition",
)


def graph(gate: dg.AutomationCondition, outcome: CheckOutcome) -> list[dg.AssetsDefinition]:
    """scores (with a blocking nDCG gate) -> comparison, which follows it past the gate."""

    @dg.asset(check_specs=blocking_specs("scores", [NDCG_HAS_NOT_REGRESSED]))
    def scores():
        return dg.MaterializeResult(check_results=check_results([outcome]))

    @dg.asset(deps=[scores], automation_condition=dg.AutomationCondition.eager() & gate)
    def comparison():
        return None

    return [scores, comparison]


def test_an_untested_check_is_a_warning_that_does_not_stop_the_run():
    result = dg.materialize(graph(ALL_DEPS_BLOCKING_CHECKS_NOT_FAILED, FIRST_RUN))
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["not_tested"].value == "compared 0: first partition"
    assert evaluation.metadata["partition"].value == "none (unpartitioned)"
    assert "what_to_do" in evaluation.metadata
    # Settings are one text value (Dagster would plot numbers as a trend); real counts stay numeric.
    assert isinstance(evaluation.metadata["config"], dg.TextMetadataValue)
    assert json.loads(evaluation.metadata["config"].value) == {"confidence": 0.95, "min_effect": 0.02}
    assert "min_effect" not in evaluation.metadata and evaluation.metadata["compared"].value == 0
    # Blocking, yet downstream ran in the same run: only an ERROR failure stops it.
    assert result.success and result.asset_materializations_for_node("comparison")


@pytest.mark.parametrize(
    ("gate", "outcome", "requested"),
    [
        # Dagster 1.13's own gate waits for a pass: a WARN result would hold downstream until the
        # check passes (for the first-ever nDCG gate: until a later partition has one to compare).
        (
            dg.AutomationCondition.all_deps_blocking_checks_passed(),
            CheckOutcome(NDCG_HAS_NOT_REGRESSED, True),
            1,
        ),
        (dg.AutomationCondition.all_deps_blocking_checks_passed(), FIRST_RUN, 0),
        (ALL_DEPS_BLOCKING_CHECKS_NOT_FAILED, FIRST_RUN, 1),
        # A real failure (ERROR) still holds it.
        (ALL_DEPS_BLOCKING_CHECKS_NOT_FAILED, CheckOutcome(NDCG_HAS_NOT_REGRESSED, False), 0),
    ],
)
def test_automation_waits_only_for_checks_that_failed_with_error(gate, outcome, requested):
    assets = graph(gate, outcome)
    instance = dg.DagsterInstance.ephemeral()
    initial = dg.evaluate_automation_conditions(defs=assets, instance=instance)
    dg.materialize(assets, instance=instance, selection=["scores"], raise_on_error=False)
    result = dg.evaluate_automation_conditions(defs=assets, instance=instance, cursor=initial.cursor)
    assert result.get_num_requested(dg.AssetKey("comparison")) == requested


def test_the_code_location_serializes_for_the_daemon_and_webserver():
    """dagster dev ships the repository snapshot out of the code server: a custom condition that
    Dagster took for serializable made the location fail to load, which in-process runs never see."""
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    from orchestration.definitions import build_definitions
    from ragline.config import load_settings
    from tests.conftest import REPO

    defs = build_definitions(load_settings(REPO / "ragline.yaml"), "in_process")
    assert serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
