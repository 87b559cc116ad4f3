"""Search spaces: the decisions a controller makes and the networks they decode to.

A candidate is a decision vector: one choice index per decision, in `decisions()` order.
`Space` holds what every space shares (checking, sampling and mutating vectors) and says what
each kind must provide: `decode`/`encode` between vectors and the IR, the layer groups a
vectorized latency predictor tabulates, and the supernet slots that hold each block's weights.
Two kinds exist:

- `FactorizedSpace`: MnasNet's factorized hierarchical space over a MobileNetV3 skeleton (or
  EfficientNet-B0's, `accel_nasbench`); all layers of a stage share the stage's decisions (op,
  kernel, SE, activation, skip, width, depth). A decision with one choice stays in the vector
  (it reads the same in every space), and no controller can change it.
  Code reads a stage's decisions by name (`StageChoice`, `position`), never by index arithmetic.
- `LayerwiseSpace`: one decision per layer among a list of layer ops (ProxylessNAS,
  Once-for-All, NAS-Bench-Macro), stage widths fixed; an identity layer is skipped (after the
  first layer of a stage) or becomes a linear 1x1 projection (as the first layer of a stage,
  which changes width and resolution), so several vectors can decode to one network.

Spaces are registered by name in `SPACES`; adding one needs no change elsewhere.
"""
from __future__ import annotations

import collections
import itertools
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

import numpy as np

from search_spaces.anatomy import block_kind, conv_out
from search_spaces.errors import UserError
from search_spaces.ir import Arch, Block, Head, Stem
from search_spaces.references import SE_RULES, make_divisible, mnv3_se

# conv ops: (name, expansion); expansion None = depthwise-separable, 0 = plain kxk conv
CONV_OPS = {"mbconv3": 3, "mbconv4": 4, "mbconv6": 6, "dwsep": None, "conv": 0}


@dataclass(frozen=True)
class Decision:
    name: str
    choices: tuple


@dataclass(frozen=True)
class LayerGroup:
    """Blocks whose presence depends only on the decisions at `columns` of a vector: `blocks[idx]`
    for each combination `idx` of their choice indices, the first of them entering at size `hw`.
    A network's blocks are the union of its groups' blocks, so a latency table can tabulate each
    group once and predict any vector by lookups and sums (`latency_tables.fast`)."""

    columns: tuple[int, ...]
    hw: int
    blocks: dict[tuple[int, ...], tuple[Block, ...]]


@dataclass(frozen=True)
class HeadInput:
    """The head's input channels for each combination of the decisions at `columns`, and its input size."""

    columns: tuple[int, ...]
    hw: int
    channels: dict[tuple[int, ...], int]


Slot = tuple[int, int]  # (stage, layer): where a supernet keeps a block's weights


class Space(ABC):
    """What every kind of space provides; see the module docstring. Subclasses are frozen
    dataclasses with fields `name`, `stem`, `head`, `resolution`, `num_classes`, `reference`."""

    name: str
    stem: Stem
    head: Head
    resolution: int
    num_classes: int
    reference: str | None  # a published network of this space, trained beside a search's candidates

    @abstractmethod
    def decisions(self) -> list[Decision]:
        """The decisions in vector order."""

    @abstractmethod
    def decode(self, vector) -> Arch:
        """The network of a vector (checked)."""

    @abstractmethod
    def encode(self, arch: Arch) -> list[int]:
        """A vector that decodes to `arch`; UserError if `arch` is not in this space."""

    @abstractmethod
    def layer_groups(self, resolution: int | None = None) -> tuple[list[LayerGroup], HeadInput]:
        """The blocks of every vector, grouped by the decisions they depend on (see `LayerGroup`)."""

    # ---- for a supernet ------------------------------------------------------
    @abstractmethod
    def slots(self) -> list[list[dict[str, Block]]]:
        """For each stage and layer slot, the largest block of each kind (`anatomy.block_kind`) the
        space can put there: a supernet keeps one set of weights per slot and kind."""

    @abstractmethod
    def places(self, vector) -> tuple[Slot, ...]:
        """The slot of each block of `decode(vector)`, in order: a supernet cannot recover it from
        the IR alone when identity layers make decoding many-to-one."""

    @abstractmethod
    def choice_size(self, decision: int, choice: int) -> float:
        """How much of a supernet's shared weights choice `choice` of decision `decision` uses
        (0 for switches such as an activation): the largest and smallest candidates pick by it."""

    # ---- shared ---------------------------------------------------------------
    def deployed(self, num_classes: int, resolution: int) -> "Space":
        """This space for another number of classes and input size (the networks a search ships)."""
        return replace(self, num_classes=num_classes, resolution=resolution)

    def check(self, vector) -> list[int]:
        ds = self.decisions()
        vector = list(vector)
        if len(vector) != len(ds):
            raise UserError(f"space {self.name}: decision vector has {len(vector)} entries, expected {len(ds)}")
        for v, d in zip(vector, ds):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < len(d.choices):
                raise UserError(f"space {self.name}: decision {d.name} = {v!r} is not an index below {len(d.choices)}")
        return vector

    def check_many(self, vectors) -> np.ndarray:
        """`vectors` as an (N, decisions) integer array, checked at once (`check` one by one is slow)."""
        sizes = np.array([len(d.choices) for d in self.decisions()])
        v = np.asarray(vectors)
        if v.size == 0:
            v = v.reshape(0, len(sizes)).astype(np.int64)
        if v.ndim != 2 or v.shape[1] != len(sizes) or v.dtype.kind not in "iu" or ((v < 0) | (v >= sizes)).any():
            raise UserError(f"space {self.name}: expected an (N, {len(sizes)}) array of decision indices, each below "
                            f"its decision's number of choices")
        return v

    def sample(self, rng: random.Random) -> list[int]:
        return [rng.randrange(len(d.choices)) for d in self.decisions()]

    def mutate(self, vector, rng: random.Random) -> list[int]:
        """Change exactly one decision to a different choice."""
        vector = self.check(vector)
        ds = self.decisions()
        i = rng.choice([j for j, d in enumerate(ds) if len(d.choices) > 1])
        vector[i] = rng.choice([c for c in range(len(ds[i].choices)) if c != vector[i]])
        return vector

    def _check_frame(self, arch: Arch) -> None:
        if (arch.stem, arch.head, arch.resolution, arch.num_classes) != (
                self.stem, self.head, self.resolution, self.num_classes):
            raise UserError(f"architecture is not in space {self.name}: stem, head, resolution "
                            f"or classes differ")


STAGE_DECISIONS = ("op", "kernel", "se", "act", "skip", "width", "depth")


# the value each decision of one stage took (all layers of the stage share them)
StageChoice = collections.namedtuple("StageChoice", STAGE_DECISIONS)


@dataclass(frozen=True)
class StageSkeleton:
    base_width: int
    base_depth: int
    stride: int
    #: absolute depth choices (Accel-NASBench's 1-3 layers); None: the space's `depth_deltas` around `base_depth`
    depths: tuple[int, ...] | None = None


@dataclass(frozen=True)
class FactorizedSpace(Space):
    name: str
    stem: Stem
    stages: tuple[StageSkeleton, ...]
    head: Head
    reference: str | None               # the MobileNetV3 this space is built around
    resolution: int = 224
    num_classes: int = 1000
    conv_ops: tuple[str, ...] = tuple(CONV_OPS)
    kernels: tuple[int, ...] = (3, 5, 7)
    se_ratios: tuple[float, ...] = (0.0, 0.25)
    acts: tuple[str, ...] = ("relu", "hswish")
    skips: tuple[str, ...] = ("identity", "none")
    width_mults: tuple[float, ...] = (0.75, 1.0, 1.25)
    depth_deltas: tuple[int, ...] = (-1, 0, 1)
    se_rule: str = "mnv3"                # how an SE block's squeeze width and gate follow (`SE_RULES`)

    # ---- the decisions ------------------------------------------------------
    def stage_options(self, s: int) -> dict[str, tuple]:
        """{decision name: its choices} for stage `s`, in `STAGE_DECISIONS` order."""
        st = self.stages[s]
        return {"op": self.conv_ops, "kernel": self.kernels, "se": self.se_ratios, "act": self.acts,
                "skip": self.skips,
                # rounding can merge multipliers (0.75 x 16 -> 16): keep each width once
                "width": tuple(dict.fromkeys(make_divisible(st.base_width * m) for m in self.width_mults)),
                "depth": st.depths or tuple(sorted({max(1, st.base_depth + d) for d in self.depth_deltas}))}

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
    def stage_blocks(self, s: int, cin: int, choice: StageChoice) -> list[Block]:
        blocks, expansion = [], CONV_OPS[choice.op]
        for i in range(choice.depth):
            stride = self.stages[s].stride if i == 0 else 1
            mid = choice.width if expansion == 0 else cin * (expansion or 1)  # dwsep: mid = in
            se = SE_RULES[self.se_rule](cin, mid) if choice.se else None
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
        self._check_frame(arch)
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

    # ---- latency groups and supernet slots ----------------------------------------
    def layer_groups(self, resolution: int | None = None) -> tuple[list[LayerGroup], HeadInput]:
        """One group per stage: its blocks depend on its own decisions and the previous stage's width."""
        hw = conv_out(resolution or self.resolution, self.stem.kernel, self.stem.stride)
        groups, widths, prev = [], (self.stem.out,), ()
        for s, skeleton in enumerate(self.stages):
            options = self.stage_options(s)
            own = tuple(self.position(s, name) for name in STAGE_DECISIONS)
            blocks = {}
            for w, cin in enumerate(widths):
                for idx in itertools.product(*(range(len(c)) for c in options.values())):
                    blocks[(w,)[:len(prev)] + idx] = tuple(self.stage_blocks(s, cin, self.stage_choice(s, idx)))
            groups.append(LayerGroup(prev + own, hw, blocks))
            hw = conv_out(hw, 3, skeleton.stride)  # kernel size does not change the output size (same padding)
            widths, prev = options["width"], (self.position(s, "width"),)
        return groups, HeadInput(prev, hw, {(w,): c for w, c in enumerate(widths)})

    def slots(self) -> list[list[dict[str, Block]]]:
        stages, cin = [], self.stem.out
        for s in range(len(self.stages)):
            opts = self.stage_options(s)
            layers: list[dict[str, Block]] = []
            for op in opts["op"]:
                choice = StageChoice(op=op, kernel=max(opts["kernel"]), se=max(opts["se"]), act=opts["act"][0],
                                     skip=opts["skip"][0], width=max(opts["width"]), depth=max(opts["depth"]))
                for i, b in enumerate(self.stage_blocks(s, cin, choice)):
                    if i == len(layers):
                        layers.append({})
                    kind = block_kind(b)
                    if kind not in layers[i] or b.mid > layers[i][kind].mid:
                        layers[i][kind] = b
            stages.append(layers)
            cin = max(opts["width"])
        return stages

    def places(self, vector) -> tuple[Slot, ...]:
        vector = self.check(vector)
        depths = [self.stage_choice(s, vector[self.position(s, "op"):]).depth for s in range(len(self.stages))]
        return tuple((s, i) for s, d in enumerate(depths) for i in range(d))

    def choice_size(self, decision: int, choice: int) -> float:
        d = self.decisions()[decision]
        value = d.choices[choice]
        if d.name.endswith(".op"):
            expansion = CONV_OPS[value]
            return 1 if expansion is None else 2 if expansion == 0 else expansion
        return value if isinstance(value, (int, float)) else 0

@dataclass(frozen=True)
class LayerOp:
    """One choice of a layer-wise space: an inverted residual with `expansion` (expanded channels =
    input channels x expansion; 1 = depthwise-separable) and `kernel`, or the identity (`expansion`
    None)."""

    name: str
    expansion: int | None = None
    kernel: int = 3
    act: str = "relu"
    se: bool = False


IDENTITY = LayerOp("identity")


@dataclass(frozen=True)
class LayerStage:
    width: int
    depth: int    # layers, each one decision
    stride: int   # of the stage's first layer


@dataclass(frozen=True)
class LayerwiseSpace(Space):
    name: str
    stem: Stem
    stages: tuple[LayerStage, ...]
    head: Head
    ops: tuple[LayerOp, ...]
    reference: str | None = None
    resolution: int = 224
    num_classes: int = 1000

    def layers(self) -> list[tuple[int, int, int]]:
        """(stage, layer in the stage, input channels) of every decision, in vector order."""
        out, cin = [], self.stem.out
        for s, st in enumerate(self.stages):
            out += [(s, i, cin if i == 0 else st.width) for i in range(st.depth)]
            cin = st.width
        return out

    def decisions(self) -> list[Decision]:
        return [Decision(f"s{s}.l{i}", tuple(op.name for op in self.ops)) for s, i, _ in self.layers()]

    def layer_block(self, s: int, i: int, cin: int, op: LayerOp) -> Block | None:
        """The block of layer `i` of stage `s` for `op`; None for an identity that does nothing. An
        identity that must change width or resolution (a stage's first layer) is a linear 1x1
        conv + BN, NAS-Bench-Macro's convention."""
        st = self.stages[s]
        stride = st.stride if i == 0 else 1
        keeps_shape = stride == 1 and cin == st.width
        if op.expansion is None:
            return None if keeps_shape else Block("conv", cin, st.width, st.width, 1, stride, "none")
        mid = cin * op.expansion
        return Block("ir", cin, st.width, mid, op.kernel, stride, op.act, mnv3_se(mid) if op.se else None,
                     residual=keeps_shape)

    def _blocks(self, vector) -> list[tuple[Slot, Block]]:
        vector = self.check(vector)
        pairs = ((s, i, self.layer_block(s, i, cin, self.ops[v])) for (s, i, cin), v in zip(self.layers(), vector))
        return [((s, i), b) for s, i, b in pairs if b is not None]

    def decode(self, vector) -> Arch:
        return Arch(self.stem, tuple(b for _, b in self._blocks(vector)), self.head, self.resolution,
                    self.num_classes)

    def encode(self, arch: Arch) -> list[int]:
        """The canonical vector of `arch`: within a stage, its blocks first and identities after."""
        self._check_frame(arch)
        blocks, layers = tuple(arch.blocks), self.layers()
        # non-identity ops first, so the first parse found packs each stage's blocks to its front
        order = sorted(range(len(self.ops)), key=lambda j: self.ops[j].expansion is None)

        def parse(n: int, pos: int) -> list[int] | None:
            if n == len(layers):
                return [] if pos == len(blocks) else None
            s, i, cin = layers[n]
            for j in order:
                b = self.layer_block(s, i, cin, self.ops[j])
                if b is None or (pos < len(blocks) and blocks[pos] == b):
                    tail = parse(n + 1, pos + (b is not None))
                    if tail is not None:
                        return [j] + tail
            return None

        vector = parse(0, 0)
        if vector is None:
            raise UserError(f"architecture is not in space {self.name}: its blocks match no choice of layer ops")
        return vector

    def layer_groups(self, resolution: int | None = None) -> tuple[list[LayerGroup], HeadInput]:
        """One group per layer: widths are fixed, so a layer's block depends on its own decision only."""
        hw = conv_out(resolution or self.resolution, self.stem.kernel, self.stem.stride)
        groups = []
        for n, (s, i, cin) in enumerate(self.layers()):
            blocks = {(j,): tuple(b for b in [self.layer_block(s, i, cin, op)] if b is not None)
                      for j, op in enumerate(self.ops)}
            groups.append(LayerGroup((n,), hw, blocks))
            if i == 0:
                hw = conv_out(hw, 3, self.stages[s].stride)
        return groups, HeadInput((), hw, {(): self.stages[-1].width})

    def slots(self) -> list[list[dict[str, Block]]]:
        stages: list[list[dict[str, Block]]] = [[] for _ in self.stages]
        for s, i, cin in self.layers():
            largest: dict[str, Block] = {}
            for op in self.ops:
                b = self.layer_block(s, i, cin, op)
                if b is None:
                    continue
                kind, old = block_kind(b), largest.get(block_kind(b))
                # one set of weights per kind serves every op of that kind: the widest and largest kernel
                largest[kind] = b if old is None else replace(old, mid=max(old.mid, b.mid),
                                                                 kernel=max(old.kernel, b.kernel))
            stages[s].append(largest)
        return stages

    def places(self, vector) -> tuple[Slot, ...]:
        return tuple(slot for slot, _ in self._blocks(vector))

    def choice_size(self, decision: int, choice: int) -> float:
        op = self.ops[choice]
        return 0 if op.expansion is None else op.expansion * op.kernel ** 2


MNV3 = FactorizedSpace(
    name="mnv3",
    stem=Stem(16, 3, 2, "hswish"),
    stages=(StageSkeleton(16, 1, 1), StageSkeleton(24, 2, 2), StageSkeleton(40, 3, 2),
            StageSkeleton(80, 4, 2), StageSkeleton(112, 2, 1), StageSkeleton(160, 3, 2)),
    head=Head("mnv3", 960, "hswish", 1280),
    reference="mobilenet_v3_large",
)

MNV3_SMALL = FactorizedSpace(
    name="mnv3_small",
    stem=Stem(16, 3, 2, "hswish"),
    stages=(StageSkeleton(16, 1, 2), StageSkeleton(24, 2, 2), StageSkeleton(40, 3, 2),
            StageSkeleton(48, 2, 1), StageSkeleton(96, 3, 2)),
    head=Head("mnv3", 576, "hswish", 1024),
    reference="mobilenet_v3_small",
)

#: NAS-Bench-Macro (Su et al., CVPR 2021): 8 layers, each an identity, MBConv e3 k3 or MBConv e6 k5 (the
#: decision index is the benchmark's code digit), CIFAR-10 at 32x32; `nas.benchmarks.nasbench_macro`
#: holds its trained accuracies
NASBENCH_MACRO = LayerwiseSpace(
    name="nasbench_macro",
    stem=Stem(32, 3, 1, "relu"),
    stages=(LayerStage(64, 2, 2), LayerStage(128, 3, 2), LayerStage(256, 3, 2)),
    head=Head("mnv2", 1280, "relu", dropout=0.0),
    ops=(IDENTITY, LayerOp("mbconv3_k3", 3, 3), LayerOp("mbconv6_k5", 6, 5)),
    resolution=32, num_classes=10,
)

#: Accel-NASBench (Ahmad et al. 2024): MnasNet's factorized space over EfficientNet-B0's skeleton with
#: fixed widths and ReLU; per stage expansion 1 (no expansion conv), 4 or 6, kernel 3 or 5, SE on/off
#: (EfficientNet's squeeze from the block input, hard-sigmoid gate) and 1-3 layers (1-4 in stage 5);
#: ImageNet at 224 px. `nas.benchmarks.accel_nasbench` holds its trained accuracies and device timings
ACCEL_NASBENCH = FactorizedSpace(
    name="accel_nasbench",
    stem=Stem(32, 3, 2, "relu"),
    stages=tuple(StageSkeleton(width, 1, stride, depths=tuple(range(1, most + 1))) for width, stride, most in
                 ((16, 1, 3), (24, 2, 3), (40, 2, 3), (80, 2, 3), (112, 1, 3), (192, 2, 4), (320, 1, 3))),
    head=Head("mnv2", 1280, "relu"),
    reference="efficientnet_b0_relu",
    conv_ops=("dwsep", "mbconv4", "mbconv6"),  # expansion 1, 4, 6: the benchmark's e
    kernels=(3, 5),
    acts=("relu",),
    skips=("identity",),
    width_mults=(1.0,),
    se_rule="efficientnet",
)

SPACES = {s.name: s for s in (MNV3, MNV3_SMALL, NASBENCH_MACRO, ACCEL_NASBENCH)}


def get_space(name: str) -> Space:
    try:
        return SPACES[name]
    except KeyError:
        raise UserError(f"unknown search space {name!r} (known: {', '.join(sorted(SPACES))})") from None
