"""Running a search: a session (controller + run directory) driven by Ray Tune.

`SearchSession` proposes candidates through its controller and records each finished one
(trials.csv, controller state, best/) before anything else happens, so a search killed at
any point resumes with no finished trial lost or run twice. `run_search` starts Ray (or
attaches to a cluster), runs the Tune experiment for the trials still missing, shuts Ray
down and writes the reports.
"""
from __future__ import annotations

import json
import math
import os

import pandas as pd
from tqdm import tqdm

from nas.controllers import make_controller
from nas.evaluation import JOB_KEYS, cached_target, deployment_arch
from nas.evaluators import evaluator
from nas.latency_window import LatencyWindow, Screen
from nas.ray_session import ray_session
from nas.reward import Reward
from nas.run_config import RunConfig
from nas.run_dir import TRIAL_COLUMNS, RunDir, write_csv
from nas.search_report import measured_accuracy
from search_spaces.atomic import atomic_write
from search_spaces.errors import UserError
from search_spaces.ir import Arch
from search_spaces.references import reference
from search_spaces.space import get_space

#: a trials.csv row without what only a controller's candidate has
REFERENCE_COLUMNS = ["name"] + [c for c in TRIAL_COLUMNS if c not in ("trial", "key", "vector", "rejected_before")]


class SearchSession:
    def __init__(self, run: RunDir, threads: int = 1, progress: bool = True, device: str = "cpu"):
        self.run, self.cfg = run, run.config()
        self.space = get_space(self.cfg.space)
        self.reward = Reward(self.cfg.reward, self.cfg.latency_target_ms, self.cfg.w)
        self.scorer = evaluator(self.cfg.evaluator)
        self.controller = make_controller(self.cfg.controller, self.space, seed=self.cfg.seed,
                                          n_objectives=self.reward.n_objectives)
        self.trials = run.trials()
        state = run.controller_state()
        if state is not None and state["n_trials"] > len(self.trials):
            state = None  # it has seen a torn last row that trials.csv dropped: rebuild it from the rows
        if state is not None:
            try:
                self.controller.load_state_dict(state["controller"])
            except (KeyError, TypeError, ValueError, RuntimeError) as e:  # well-formed, but another controller's
                raise UserError(f"{run / 'controller.pt'} is not a {self.cfg.controller} controller's state "
                                f"({type(e).__name__}: {e}); delete it to rebuild the controller from trials.csv"
                                ) from None
        # rows recorded after the last saved controller state: the controller has not seen them
        for row in self.trials.iloc[0 if state is None else state["n_trials"]:].itertuples():
            self.controller.tell(row.key, json.loads(row.vector), self.objectives(row.status, row.accuracy,
                                                                                  row.latency_ms))
        self.sync_best()
        # runs from before the window existed trained whatever was proposed
        window = LatencyWindow(*(self.cfg.latency_window or (0.0, math.inf)), self.reward.target_ms)
        self.screen = Screen(window, self.latency_ms)
        self.stopped: str | None = None
        self.job = {k: getattr(self.cfg, k) for k in JOB_KEYS if k != "threads"} | {"threads": threads, "device": device}
        self.to_ask = max(0, self.cfg.trials - len(self.trials))
        self.pending: dict[str, tuple[list[int], int]] = {}  # key -> (vector, proposals rejected before it)
        self.weights: dict[str, bytes] = {}  # weights of finished trials, from their results
        # the space's reference, trained once with the same recipe: what "good" means on this proxy
        self.reference_key: str | None = None
        self.reference_wanted = self.cfg.train_reference and run.reference() is None
        self.bar = tqdm(total=self.cfg.trials, initial=len(self.trials), unit="trial", dynamic_ncols=True,
                        desc=f"search {self.cfg.controller}", disable=not progress)
        self._show_best()

    def latency_ms(self, vector) -> float:
        """The same lookup a worker makes for the candidate's latency_ms."""
        return cached_target(self.cfg.target).query_total(
            deployment_arch(self.cfg.space, vector, self.cfg.num_classes, self.cfg.deploy_resolution))

    def objectives(self, status: str, accuracy: float, latency_ms: float):
        return self.reward.objectives(accuracy, latency_ms) if status == "ok" else None

    # ---- the Searcher side ----------------------------------------------------
    @property
    def jobs_left(self) -> int:
        """Candidates still to train, plus the reference if it is not trained yet."""
        return self.to_ask + int(self.reference_wanted)

    def reference_job(self, key: str) -> dict:
        self.reference_wanted, self.reference_key = False, key
        arch = reference(self.cfg.reference).replace(num_classes=self.cfg.num_classes,
                                                        resolution=self.cfg.deploy_resolution)
        return {**self.job, "arch": arch.to_string(), "vector": None, "key": key}

    def ask(self, key: str) -> dict | None:
        if self.reference_wanted:
            return self.reference_job(key)
        if self.to_ask == 0 or self.stopped:
            return None
        vector, rejected = self.screen.propose(self.controller, key)
        if vector is None:
            self.stopped = (f"search stopped: {self.cfg.controller} made {rejected} proposals in a row "
                            f"outside the latency window {self.screen.window.describe()}")
            self.bar.write(self.stopped)
            return None
        self.to_ask -= 1
        self.pending[key] = vector, rejected
        return {**self.job, "vector": vector, "key": key}

    def finish(self, key: str, result: dict | None) -> None:
        if key == self.reference_key:
            self.weights.pop(key, None)  # the reference is measured, not deployed
            if result is not None:  # a worker that died leaves it for the next resume
                row = {"name": self.cfg.reference, **result, "reward": math.nan}
                if row["status"] == "ok":
                    self.score(row)
                write_csv(self.run / "reference.csv", pd.DataFrame([row]).reindex(columns=REFERENCE_COLUMNS))
            return
        vector, rejected = self.pending.pop(key)
        if result is None:  # the worker itself died; evaluate_candidate catches everything else
            arch = deployment_arch(self.cfg.space, vector, self.cfg.num_classes, self.cfg.deploy_resolution)
            result = {"arch": arch.to_string(), "status": "failed", "reason": "worker error (see Ray logs)"}
        row = {"trial": len(self.trials), "key": key, "vector": json.dumps(vector), "rejected_before": rejected,
               **result, "accuracy_source": self.scorer.accuracy_source(vector) if result["status"] == "ok" else ""}
        weights = self.weights.pop(key, None)
        if row["status"] == "ok" and weights is None:  # e.g. a worker running other code: a failed trial
            row.update(status="failed", reason="no weights came back from the worker")
        row["reward"] = math.nan
        if row["status"] == "ok":
            self.score(row)
        previous_best = self.best_row()
        new_best = row["status"] == "ok" and (previous_best is None or row["reward"] > previous_best["reward"])
        if new_best:  # on disk before the trial is recorded: a kill in between still promotes it on resume
            atomic_write(self.run.pending_weights(key), lambda tmp: tmp.write_bytes(weights))
        self.trials = pd.concat([self.trials, pd.DataFrame([row]).reindex(columns=self.trials.columns)],
                                ignore_index=True)
        self.controller.tell(key, vector, self.objectives(row["status"], row.get("accuracy"), row.get("latency_ms")))
        self.run.record(self.trials, self.controller.state_dict())
        if new_best:
            self.run.promote(row, Arch.from_string(row["arch"]))
            self.run.pending_weights(key).unlink()
        self.bar.update(1)
        self._show_best()

    def score(self, row: dict) -> None:
        """The row's reward; a score that is not a finite number fails the trial (the controller
        and the best-trial lookup cannot use it) instead of the search."""
        try:
            reward = self.reward.scalar(row["accuracy"], row["latency_ms"])
            reason = f"reward is {reward}"
        except (ArithmeticError, ValueError) as e:
            reward, reason = math.nan, f"reward not computable: {type(e).__name__}: {e}"
        if math.isfinite(reward):
            row["reward"] = reward
        else:
            row.update(status="failed", reason=reason)

    # ---- bookkeeping ---------------------------------------------------------
    def best_row(self) -> dict | None:
        finite = self.trials["reward"].astype(float).abs() < math.inf  # rows of older runs may hold NaN
        ok = self.trials[(self.trials["status"] == "ok") & finite]
        return None if ok.empty else ok.loc[ok["reward"].astype(float).idxmax()].to_dict()

    def sync_best(self) -> None:
        """After a kill between recording a trial and promoting it, finish the promotion."""
        best = self.best_row()
        if best is not None and self.run.best_trial_key() != best["key"] \
                and self.run.pending_weights(best["key"]).exists():
            self.run.promote(best, Arch.from_string(best["arch"]))
        self.run.discard_pending()

    def _show_best(self) -> None:
        best = self.best_row()
        if best is not None:
            what = "acc" if measured_accuracy(self.cfg) else "score quantile"
            self.bar.set_postfix_str(f"best reward {best['reward']:.4f} ({what} {best['accuracy']:.3f}, "
                                     f"{best['latency_ms']:.1f} ms)")


def trial_resources(cfg: RunConfig, cluster: dict) -> tuple[dict, str]:
    """What each trial asks Ray for ({"cpu": threads, "gpu": fraction}) and the device it trains on.

    Without --gpus-per-trial a trial takes a whole GPU when the cluster has one. A trial given
    a GPU trains on the run's device spec (auto or cuda): Ray restricts CUDA_VISIBLE_DEVICES to
    its GPU, and `auto` falls back to the CPU on a node whose torch sees no CUDA.

    `cuda:N` (a search with one worker on this machine; `search_cli.search_devices` refuses the
    rest) asks Ray for no GPU: Ray then leaves the trial's CUDA_VISIBLE_DEVICES as the command
    had it (ray 2.60 sets it only for a task given GPUs, unless RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO
    is set), so cuda:N names the same GPU in the trial as where it was checked. Asking Ray for
    that GPU instead would not work: Ray picks its own, and narrows CUDA_VISIBLE_DEVICES to it."""

    cpus = cfg.cpus_per_trial or max(1, int(cluster.get("CPU", 1)) // cfg.workers)
    device = cfg.device
    if device.startswith("cuda:"):
        return {"cpu": cpus, "gpu": 0}, device
    gpus = cfg.gpus_per_trial
    if gpus is None:
        gpus = 1 if device != "cpu" and cluster.get("GPU", 0) >= 1 else 0
        if device == "cuda" and not gpus:
            raise UserError("--device cuda: the Ray cluster has no GPU")
    return {"cpu": cpus, "gpu": gpus}, device if gpus else "cpu"


def run_in_process(run: RunDir, progress: bool = True) -> SearchSession:
    """The search without Ray, one candidate after another in this process: for an evaluator that
    needs no worker (a benchmark lookup takes milliseconds, a Ray trial's overhead far more)."""
    from nas.evaluation import evaluate_candidate

    session = SearchSession(run, threads=1, progress=progress, device="cpu")
    while True:
        key = f"local_{len(session.trials):06d}"
        job = session.ask(key)
        if job is None:
            break
        result = evaluate_candidate(job)
        weights = result.pop("weights", None)
        if weights is not None:
            session.weights[key] = weights
        session.finish(key, result)
    session.bar.close()
    return session


def run_search(run: RunDir, address: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Run (or continue) the search in `run`; returns the trials table."""
    from nas.search_report import write_reports

    cfg = run.config()
    if not evaluator(cfg.evaluator).needs_workers and address is None:
        session = run_in_process(run, progress)
        write_reports(run, session.trials)
        return session.trials
    with ray_session(run, address, os.cpu_count() or 1) as tmp:
        import ray
        from ray import tune

        from nas.evaluation import trainable
        from nas.tune_searcher import ControllerSearcher, TrialWeights

        resources, device = trial_resources(cfg, ray.cluster_resources())
        session = SearchSession(run, threads=resources["cpu"], progress=progress, device=device)
        if session.jobs_left:
            tuner = tune.Tuner(
                tune.with_resources(trainable, resources),
                tune_config=tune.TuneConfig(search_alg=ControllerSearcher(session), num_samples=session.jobs_left,
                                            max_concurrent_trials=cfg.workers, reuse_actors=True),
                run_config=tune.RunConfig(storage_path=os.path.join(tmp, "tune"), name="search", verbose=0,
                                          callbacks=[TrialWeights(session)]))
            tuner.fit()
        session.bar.close()
    write_reports(run, session.trials)
    return session.trials
