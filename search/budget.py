"""A study's trial budget: the number of finished (complete or pruned) trials it ends with.

Workers on any machine share it through the storage: a worker starts no trial once the finished
and running trials cover the budget, and a trial that lost the race for the last place (the
finished and running trials numbered before it already fill the budget) ends at once as FAIL
"budget reached", before any work. Failed trials do not count, so a failure is made up by another
trial. Queued (WAITING) trials run first, within the budget.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from .stopping import SearchStopped

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
ACTIVE = (*FINISHED, TrialState.RUNNING)
BUDGET_REASON = "budget reached"


class BudgetReached(SearchStopped):
    """Raised in a trial that would exceed the study's budget: stopped before any work."""


def budget_of(study: optuna.Study) -> int:
    return int(study.user_attrs["bnnx"]["trials"])


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def is_covered(study: optuna.Study) -> bool:
    """True when finished and running trials already cover the budget."""
    return len(study.get_trials(deepcopy=False, states=ACTIVE)) >= budget_of(study)


def check_place(study: optuna.Study, number: int) -> None:
    """Raise BudgetReached when the trials numbered before `number` already fill the budget."""
    before = [t for t in study.get_trials(deepcopy=False, states=ACTIVE) if t.number < number]
    if len(before) >= budget_of(study):
        raise BudgetReached(BUDGET_REASON)
