"""Running a search: a session (controller + run directory) driven by Ray Tune.

`SearchSession` proposes candidates through its controller and records each finished one
(trials.csv, controller state, best/) before anything else happens, so a search killed at
any point resumes with no finished trial lost or run twice. `run_search` starts Ray (or
attaches to a cluster), runs the Tune experiment for the trials still missing, shuts Ray
down and writes the reports.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from contextlib import contextmanager

import pandas as pd
from tqdm import tqdm

from nas.controllers import make_controller
from nas.evaluation import JOB_KEYS, cached_target, deployment_arch
from nas.latency_window import LatencyWindow, Screen
from nas.reward import Reward
from nas.run_dir import TRIAL_COLUMNS, RunDir, write_csv
from search_spaces.ir import Arch
from search_spaces.references import reference
from search_spaces.space import get_space

#: a trials.csv row without what only a controller's candidate has
REFERENCE_COLUMNS = ["name"] + [c for c in TRIAL_COLUMNS if c not in ("trial", "key", "vector", "rejected_before")]


class SearchSession:
    def __init__(self, run: RunDir, threads: int = 1, progress: bool = True):
        self.run, self.cfg = run, run.config()
        self.space = get_space(self.cfg["space"])
        self.reward = Reward(self.cfg["reward"], self.cfg["latency_target_ms"], self.cfg.get("w"))
        self.controller = make_controller(self.cfg["controller"], self.space, seed=self.cfg["seed"],
                                          n_objectives=self.reward.n_objectives)
        self.trials = run.trials()
        state = run.controller_state()
        if state is not None:
            self.controller.load_state_dict(state["controller"])
        # rows recorded after the last saved controller state: the controller has not seen them
        for row in self.trials.iloc[0 if state is None else state["n_trials"]:].itertuples():
            self.controller.tell(row.key, json.loads(row.vector), self.objectives(row.status, row.accuracy,
                                                                                  row.latency_ms))
        self.sync_best()
        # runs from before the window existed trained whatever was proposed
        window = LatencyWindow(*self.cfg.get("latency_window", (0.0, math.inf)), self.reward.target_ms)
        self.screen = Screen(window, self.latency_ms)
        self.stopped: str | None = None
        self.job = {k: self.cfg[k] for k in JOB_KEYS if k != "threads"} | {"threads": threads}
        self.to_ask = max(0, self.cfg["trials"] - len(self.trials))
        self.pending: dict[str, tuple[list[int], int]] = {}  # key -> (vector, proposals rejected before it)
        # the space's reference, trained once with the same recipe: what "good" means on this proxy
        self.reference_key: str | None = None
        self.reference_wanted = self.cfg.get("train_reference", False) and run.reference() is None
        self.bar = tqdm(total=self.cfg["trials"], initial=len(self.trials), unit="trial", dynamic_ncols=True,
                        desc=f"search {self.cfg['controller']}", disable=not progress)
        self._show_best()

    def latency_ms(self, vector) -> float:
        """The same lookup a worker makes for the candidate's latency_ms."""
        return cached_target(self.cfg["target"]).query_total(
            deployment_arch(self.cfg["space"], vector, self.cfg["num_classes"], self.cfg["deploy_resolution"]))

    def scalar(self, result: dict) -> float:
        return self.reward.scalar(result["accuracy"], result["latency_ms"]) if result["status"] == "ok" else math.nan

    def objectives(self, status: str, accuracy: float, latency_ms: float):
        return self.reward.objectives(accuracy, latency_ms) if status == "ok" else None

    # ---- the Searcher side ----------------------------------------------------
    @property
    def jobs_left(self) -> int:
        """Candidates still to train, plus the reference if it is not trained yet."""
        return self.to_ask + int(self.reference_wanted)

    def reference_job(self, key: str) -> dict:
        self.reference_wanted, self.reference_key = False, key
        arch = reference(self.cfg["reference"]).replace(num_classes=self.cfg["num_classes"],
                                                        resolution=self.cfg["deploy_resolution"])
        return {**self.job, "arch": arch.to_string(), "vector": None, "key": key, "weights": None}

    def ask(self, key: str) -> dict | None:
        if self.reference_wanted:
            return self.reference_job(key)
        if self.to_ask == 0 or self.stopped:
            return None
        vector, rejected = self.screen.propose(self.controller, key)
        if vector is None:
            self.stopped = (f"search stopped: {self.cfg['controller']} made {rejected} proposals in a row "
                            f"outside the latency window {self.screen.window.describe()}")
            self.bar.write(self.stopped)
            return None
        self.to_ask -= 1
        self.pending[key] = vector, rejected
        return {**self.job, "vector": vector, "key": key, "weights": str(self.run.pending_weights(key))}

    def finish(self, key: str, result: dict | None) -> None:
        if key == self.reference_key:
            if result is not None:  # a worker that died leaves it for the next resume
                row = {"name": self.cfg["reference"], **result, "reward": self.scalar(result)}
                write_csv(self.run / "reference.csv", pd.DataFrame([row]).reindex(columns=REFERENCE_COLUMNS))
            return
        vector, rejected = self.pending.pop(key)
        if result is None:  # the worker itself died; evaluate_candidate catches everything else
            arch = deployment_arch(self.cfg["space"], vector, self.cfg["num_classes"], self.cfg["deploy_resolution"])
            result = {"arch": arch.to_string(), "status": "failed", "reason": "worker error (see Ray logs)"}
        row = {"trial": len(self.trials), "key": key, "vector": json.dumps(vector), "rejected_before": rejected,
               **result}
        row["reward"] = self.scalar(row)
        previous_best = self.best_row()
        self.trials = pd.concat([self.trials, pd.DataFrame([row]).reindex(columns=self.trials.columns)],
                                ignore_index=True)
        self.controller.tell(key, vector, self.objectives(row["status"], row.get("accuracy"), row.get("latency_ms")))
        self.run.record(self.trials, self.controller.state_dict())
        if row["status"] == "ok" and (previous_best is None or row["reward"] > previous_best["reward"]):
            self.run.promote(row, Arch.from_string(row["arch"]))
        # other workers' files stay: their trials are still running
        self.run.pending_weights(key).unlink(missing_ok=True)
        self.bar.update(1)
        self._show_best()

    # ---- bookkeeping ---------------------------------------------------------
    def best_row(self) -> dict | None:
        ok = self.trials[self.trials["status"] == "ok"]
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
            self.bar.set_postfix_str(f"best reward {best['reward']:.4f} (acc {best['accuracy']:.3f}, "
                                     f"{best['latency_ms']:.1f} ms)")


@contextmanager
def ray_session(address: str | None, num_cpus: int):
    """Start a local Ray (files under a short temp dir) or attach to `address`; always shut down."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not address:
        # a local search has no other nodes: keep every Ray socket on the loopback address
        # (Ray reads this flag at import, hence before `import ray`)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    tmp = tempfile.mkdtemp(prefix="nasray-", dir="/tmp")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0: no banner
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            # Ray nices its workers to 15; here the trials are the command's main work, and niced
            # they would starve behind any other process on a shared machine
            os.environ.setdefault("RAY_worker_niceness", "0")
            # OpenMP threads that spin while waiting run ~10x slower when other jobs share the cores
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            ray.init(num_cpus=num_cpus, _temp_dir=tmp, include_dashboard=False, **quiet)
        yield tmp
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def run_search(run: RunDir, address: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Run (or continue) the search in `run`; returns the trials table."""
    from nas.search_report import write_reports

    cfg = run.config()
    workers = cfg["workers"]
    with ray_session(address, os.cpu_count() or 1) as tmp:
        import ray
        from ray import tune

        from nas.evaluation import trainable
        from nas.tune_searcher import ControllerSearcher

        cpus = int(ray.cluster_resources().get("CPU", 1))
        threads = max(1, cpus // workers)
        session = SearchSession(run, threads=threads, progress=progress)
        if session.jobs_left:
            tuner = tune.Tuner(
                tune.with_resources(trainable, {"cpu": threads}),
                tune_config=tune.TuneConfig(search_alg=ControllerSearcher(session), num_samples=session.jobs_left,
                                            max_concurrent_trials=workers, reuse_actors=True),
                run_config=tune.RunConfig(storage_path=os.path.join(tmp, "tune"), name="search", verbose=0))
            tuner.fit()
        session.bar.close()
    write_reports(run, session.trials)
    return session.trials
