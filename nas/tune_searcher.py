"""A controller plugged into Ray Tune as a `Searcher`: Tune schedules, the controller proposes.

The searcher and the weights callback are thin bridges to a `SearchSession` (nas/search.py),
which owns the controller and records every finished trial in the run directory; Tune's own experiment
checkpoints are not used for resume (the run directory is the source of truth).
"""
from __future__ import annotations

from ray.tune import Callback
from ray.tune.search import Searcher


class ControllerSearcher(Searcher):
    def __init__(self, session):
        # Tune insists on a metric every result carries; the session computes the reward itself
        super().__init__(metric="accuracy", mode="max")
        self.session = session

    def suggest(self, trial_id: str):
        job = self.session.ask(trial_id)
        return Searcher.FINISHED if job is None else job

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.session.finish(trial_id, None if error else result)

    # Tune asks searchers to checkpoint themselves; the session's run directory already is the checkpoint.
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass


class TrialWeights(Callback):
    """Hands a trial's weights, which come with its result, to the session, and takes them out of
    the result before Tune's loggers and experiment state see it (user callbacks run first)."""

    def __init__(self, session):
        self.session = session

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        weights = result.pop("weights", None)
        if weights is not None:
            self.session.weights[trial.trial_id] = weights
