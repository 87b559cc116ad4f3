"""MnasNet's controller: a recurrent policy emitting one categorical per decision, trained with PPO.

An LSTM cell reads the previous choice and emits logits for the next decision; a candidate's
log-probability is the sum over decisions. Every `batch` trained candidates the policy takes
`ppo_epochs` steps of the clipped surrogate objective on advantages against a moving-average
baseline, plus an entropy bonus that keeps it exploring.

A proposal outside the latency window has no reward; it enters the next update with a fixed
negative advantage, in units of the trained candidates' advantage spread, and leaves the
baseline alone. Told as a reward of -0.1 (before), rejections dragged the baseline far below
every accuracy and dominated the normalized advantages: on NAS-Bench-Macro the policy then
reinforced whatever it had trained and collapsed onto 18-40 networks per run, never within 0.1 point
of the in-budget optimum (`experiments/benchmark_search.py`).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from nas.controllers.base import Controller


@contextmanager
def one_thread():
    """The policy is tiny: thread hand-offs cost 30x its compute on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Policy(nn.Module):
    def __init__(self, sizes: list[int], hidden: int = 64):
        super().__init__()
        self.offsets = [0]
        for n in sizes[:-1]:
            self.offsets.append(self.offsets[-1] + n)
        self.embed = nn.Embedding(sum(sizes) + 1, hidden)  # last row: the start token
        self.cell = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in sizes)
        self.start = sum(sizes)

    def forward(self, actions: torch.Tensor | None = None, generator: torch.Generator | None = None):
        """Sample one candidate (actions None) or score a batch of given ones [B, D].
        Returns (actions [B, D], log_prob [B], entropy [B])."""
        batch = 1 if actions is None else actions.shape[0]
        token = torch.full((batch,), self.start, dtype=torch.long)
        h = c = torch.zeros(batch, self.cell.hidden_size)
        chosen, log_prob, entropy = [], 0.0, 0.0
        for i, head in enumerate(self.heads):
            h, c = self.cell(self.embed(token), (h, c))
            logp = torch.log_softmax(head(h), dim=1)
            a = (torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)
                 if actions is None else actions[:, i])
            chosen.append(a)
            log_prob = log_prob + logp.gather(1, a[:, None]).squeeze(1)
            entropy = entropy - (logp.exp() * logp).sum(1)
            token = a + self.offsets[i]
        return torch.stack(chosen, 1), log_prob, entropy


class RLController(Controller):
    def __init__(self, space, seed: int = 0, n_objectives: int = 1, lr: float = 0.005, batch: int = 8,
                 ppo_epochs: int = 4, clip: float = 0.2, entropy_weight: float = 0.01,
                 baseline_decay: float = 0.9, hidden: int = 64, reject_penalty: float = 1.0):
        super().__init__(space, seed, n_objectives)
        torch.manual_seed(seed)  # only for the policy's initial weights
        self.policy = Policy(self.sizes, hidden)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.batch, self.ppo_epochs, self.clip = batch, ppo_epochs, clip
        self.entropy_weight, self.baseline_decay = entropy_weight, baseline_decay
        self.reject_penalty = reject_penalty
        self.baseline: float | None = None
        self.pending: dict[str, float] = {}   # key -> log-prob of the proposal when it was made
        self.buffer: list[list] = []          # [vector, old log-prob, advantage, rejected]

    def ask(self, key: str) -> list[int]:
        with torch.no_grad(), one_thread():
            actions, log_prob, _ = self.policy(generator=self.generator)
        self.pending[key] = float(log_prob)
        return actions[0].tolist()

    def tell(self, key, vector, values) -> None:
        old = self.pending.pop(key, None)
        if values is None:  # a failed candidate teaches nothing about the reward
            return
        reward = float(values[0])
        self.baseline = reward if self.baseline is None else self.baseline
        self.buffer.append([list(vector), self._old(vector, old), reward - self.baseline, False])
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        if sum(not b[3] for b in self.buffer) >= self.batch:
            with one_thread():
                self._update()

    def reject(self, key, vector, excess) -> None:
        # below every trained candidate, and lower the further outside the window: the policy
        # learns both to stay in budget and in which direction the window lies
        old = self.pending.pop(key, None)
        self.buffer.append([list(vector), self._old(vector, old), -self.reject_penalty * (1 + excess), True])

    def _old(self, vector, old: float | None) -> float:
        if old is None:  # replayed after a resume: score it under the current policy
            with torch.no_grad(), one_thread():
                old = float(self.policy(torch.tensor([vector]))[1])
        return old

    def _update(self) -> None:
        actions = torch.tensor([b[0] for b in self.buffer])
        old = torch.tensor([b[1] for b in self.buffer])
        adv = torch.tensor([b[2] for b in self.buffer])
        rejected = torch.tensor([b[3] for b in self.buffer])
        trained = adv[~rejected]
        # reward scale differs between rewards; steps should not. Rejections are already in these units.
        adv[~rejected] = trained / (trained.std() + 1e-8) if len(trained) > 1 else 0.0
        for _ in range(self.ppo_epochs):
            _, log_prob, entropy = self.policy(actions)
            ratio = torch.exp(log_prob - old)
            surrogate = torch.min(ratio * adv, ratio.clamp(1 - self.clip, 1 + self.clip) * adv)
            loss = -(surrogate.mean() + self.entropy_weight * entropy.mean())
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.buffer = []

    def state_dict(self) -> dict:
        return {**super().state_dict(), "policy": self.policy.state_dict(),
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "baseline": self.baseline, "buffer": self.buffer}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        # a state saved before rejections were kept apart holds trained candidates only
        self.baseline, self.buffer = state["baseline"], [(list(b) + [False])[:4] for b in state["buffer"]]
        self.pending = {}
