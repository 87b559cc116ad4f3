"""MnasNet's factorized hierarchical search space over a MobileNetV3 skeleton.

A space is a small declarative object: a skeleton (stem, stages, head) and the
choices every stage makes; all layers of a stage share the stage's decisions.
A candidate is a decision vector: one choice index per decision, in `decisions()` order;
code reads a stage's decisions by name (`StageChoice`, `position`), never by index arithmetic.
Spaces are registered by name in `SPACES`; adding one needs no change elsewhere.
"""
from __future__ import annotations

import collections
import itertools
import random
from dataclasses import dataclass

from search_spaces.errors import UserError
from search_spaces.ir import Arch, Block, Head, Stem
from search_spaces.references import make_divisible, mnv3_se

# conv ops: (name, expansion); expansion None = depthwise-separable, 0 = plain kxk conv
CONV_OPS = {"mbconv3": 3, "mbconv4": 4, "mbconv6": 6, "dwsep": None, "conv": 0}


@dataclass(frozen=True)
class Decision:
    name: str
    choices: tuple


STAGE_DECISIONS = ("op", "kernel", "se", "act", "skip", "width", "depth")


# the value each decision of one stage took (all layers of the stage share them)
StageChoice = collections.namedtuple("StageChoice", STAGE_DECISIONS)


@dataclass(frozen=True)
class StageSkeleton:
    base_width: int
    base_depth: int
    stride: int


@dataclass(frozen=True)
class SearchSpace:
    name: str
    stem: Stem
    stages: tuple[StageSkeleton, ...]
    head: Head
    reference: str                      # the MobileNetV3 this space is built around
    resolution: int = 224
    num_classes: int = 1000
    conv_ops: tuple[str, ...] = tuple(CONV_OPS)
    kernels: tuple[int, ...] = (3, 5, 7)
    se_ratios: tuple[float, ...] = (0.0, 0.25)
    acts: tuple[str, ...] = ("relu", "hswish")
    skips: tuple[str, ...] = ("identity", "none")
    width_mults: tuple[float, ...] = (0.75, 1.0, 1.25)
    depth_deltas: tuple[int, ...] = (-1, 0, 1)

    # ---- the decisions ------------------------------------------------------
    def stage_options(self, s: int) -> dict[str, tuple]:
        """{decision name: its choices} for stage `s`, in `STAGE_DECISIONS` order."""
        st = self.stages[s]
        return {"op": self.conv_ops, "kernel": self.kernels, "se": self.se_ratios, "act": self.acts,
                "skip": self.skips,
                # rounding can merge multipliers (0.75 x 16 -> 16): keep each width once
                "width": tuple(dict.fromkeys(make_divisible(st.base_width * m) for m in self.width_mults)),
                "depth": tuple(sorted({max(1, st.base_depth + d) for d in self.depth_deltas}))}

    def stage_choice(self, s: int, indices) -> StageChoice:
        """The values of stage `s` for one choice index per decision (`STAGE_DECISIONS` order)."""
        return StageChoice(*(choices[i] for choices, i in zip(self.stage_options(s).values(), indices)))

    def position(self, s: int, name: str) -> int:
        """Index in a decision vector of decision `name` of stage `s`."""
        return s * len(STAGE_DECISIONS) + STAGE_DECISIONS.index(name)

    def decisions(self) -> list[Decision]:
        return [Decision(f"s{s}.{name}", choices)
                for s in range(len(self.stages)) for name, choices in self.stage_options(s).items()]

    # ---- vector <-> IR ------------------------------------------------------
    def check(self, vector) -> list[int]:
        ds = self.decisions()
        vector = list(vector)
        if len(vector) != len(ds):
            raise UserError(f"space {self.name}: decision vector has {len(vector)} entries, expected {len(ds)}")
        for v, d in zip(vector, ds):
            if not isinstance(v, int) or not 0 <= v < len(d.choices):
                raise UserError(f"space {self.name}: decision {d.name} = {v!r} is not an index below {len(d.choices)}")
        return vector

    def stage_blocks(self, s: int, cin: int, choice: StageChoice) -> list[Block]:
        blocks, expansion = [], CONV_OPS[choice.op]
        for i in range(choice.depth):
            stride = self.stages[s].stride if i == 0 else 1
            mid = choice.width if expansion == 0 else cin * (expansion or 1)  # dwsep: mid = in
            se = mnv3_se(mid) if choice.se else None
            residual = choice.skip == "identity" and stride == 1 and cin == choice.width
            blocks.append(Block("conv" if expansion == 0 else "ir", cin, choice.width, mid, choice.kernel, stride,
                                choice.act, se, residual))
            cin = choice.width
        return blocks

    def decode(self, vector) -> Arch:
        vector = self.check(vector)
        blocks, cin = [], self.stem.out
        for s in range(len(self.stages)):
            stage = self.stage_blocks(s, cin, self.stage_choice(s, vector[self.position(s, "op"):]))
            blocks += stage
            cin = stage[-1].out
        return Arch(self.stem, tuple(blocks), self.head, self.resolution, self.num_classes)

    def encode(self, arch: Arch) -> list[int]:
        """Decisions of an IR that lies in this space; UserError if it does not."""
        if (arch.stem, arch.head, arch.resolution, arch.num_classes) != (
                self.stem, self.head, self.resolution, self.num_classes):
            raise UserError(f"architecture is not in space {self.name}: stem, head, resolution "
                            f"or classes differ")
        blocks = tuple(arch.blocks)

        def parse(s: int, start: int, cin: int) -> list[int] | None:
            # Depth is a decision, so a shallower stage can match a prefix of a deeper one:
            # try every match and backtrack when the rest does not parse.
            if s == len(self.stages):
                return [] if start == len(blocks) else None
            options = self.stage_options(s).values()
            for idx in itertools.product(*(range(len(c)) for c in options)):
                stage = self.stage_blocks(s, cin, self.stage_choice(s, idx))
                if blocks[start:start + len(stage)] == tuple(stage):
                    tail = parse(s + 1, start + len(stage), stage[-1].out)
                    if tail is not None:
                        return list(idx) + tail
            return None

        vector = parse(0, 0, self.stem.out)
        if vector is None:
            raise UserError(f"architecture is not in space {self.name}: its blocks match no "
                            f"choice of stage widths, depths and ops")
        return vector

    # ---- for controllers -----------------------------------------------------
    def sample(self, rng: random.Random) -> list[int]:
        return [rng.randrange(len(d.choices)) for d in self.decisions()]

    def mutate(self, vector, rng: random.Random) -> list[int]:
        """Change exactly one decision to a different choice."""
        vector = self.check(vector)
        ds = self.decisions()
        i = rng.choice([j for j, d in enumerate(ds) if len(d.choices) > 1])
        vector[i] = rng.choice([c for c in range(len(ds[i].choices)) if c != vector[i]])
        return vector


MNV3 = SearchSpace(
    name="mnv3",
    stem=Stem(16, 3, 2, "hswish"),
    stages=(StageSkeleton(16, 1, 1), StageSkeleton(24, 2, 2), StageSkeleton(40, 3, 2),
            StageSkeleton(80, 4, 2), StageSkeleton(112, 2, 1), StageSkeleton(160, 3, 2)),
    head=Head("mnv3", 960, "hswish", 1280),
    reference="mobilenet_v3_large",
)

MNV3_SMALL = SearchSpace(
    name="mnv3_small",
    stem=Stem(16, 3, 2, "hswish"),
    stages=(StageSkeleton(16, 1, 2), StageSkeleton(24, 2, 2), StageSkeleton(40, 3, 2),
            StageSkeleton(48, 2, 1), StageSkeleton(96, 3, 2)),
    head=Head("mnv3", 576, "hswish", 1024),
    reference="mobilenet_v3_small",
)

SPACES = {s.name: s for s in (MNV3, MNV3_SMALL)}


def get_space(name: str) -> SearchSpace:
    try:
        return SPACES[name]
    except KeyError:
        raise UserError(f"unknown search space {name!r} (known: {', '.join(sorted(SPACES))})") from None
