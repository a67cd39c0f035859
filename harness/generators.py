"""Generators: small composable pieces that decide which op a client does next.

Jepsen's idea, in Python: a generator is asked for the next op by a worker
and answers an :class:`OpRequest` or ``None`` (this worker is done). Pieces
wrap each other: :class:`Mix` picks among weighted sub-generators,
:class:`TimeLimit` ends a phase, :class:`Stagger` spaces ops so that all
workers together make ``rate`` ops per second (a uniform random delay of
mean ``concurrency / rate``), :class:`Phases` runs generators one after the
other.

Everything random comes from the worker's own ``random.Random`` stream,
derived from the spec's seed by :func:`worker_rng`: the op sequence of a
worker is a function of (seed, worker id) alone, never of timing or of other
workers. The nemesis schedule is a separate stream
(``nemeses.schedule.build_schedule``).
"""
from __future__ import annotations

import bisect
import dataclasses
import random
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Protocol, Sequence

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class OpRequest:
    """One op a worker should invoke.

    ``node`` overrides the worker's own coordinator (session workload);
    ``delay`` is how long after the previous op's *scheduled* start this one
    should start (set by :class:`Stagger`); ``extra`` goes into the history.
    ``follows``: this op continues the previous one (a session reading the key
    it just wrote), so it starts ``delay`` seconds after the previous op
    *completed*, and :class:`Stagger` leaves that think time alone.
    """

    f: str
    key: str | None = None
    value: Any = None
    node: str | None = None
    delay: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    follows: bool = False


@dataclass
class GenContext:
    """What a generator may look at: who asks, their random stream, the phase clock."""

    worker: int
    rng: random.Random
    elapsed: float = 0.0  # seconds since the current phase started
    state: dict[str, Any] = field(default_factory=dict)  # per-worker generator state (counters, items)


class Generator(Protocol):
    """The next op for this worker, or None when the worker is done."""

    def next(self, ctx: GenContext) -> OpRequest | None: ...


def worker_rng(seed: int, worker: int, stream: str = "client") -> random.Random:
    """The random stream of one worker: a function of (seed, stream, worker) only.

    Seeding with a string hashes it with SHA-512 (Python's version-2 seeding),
    so streams are stable across processes and Python runs.
    """
    return random.Random(f"dynharness/{stream}/{seed}/{worker}")


class KeyChooser(Protocol):
    def choose(self, rng: random.Random) -> int: ...


@dataclass(frozen=True)
class UniformKeys:
    """Every key index 0..count-1 equally likely."""

    count: int

    def choose(self, rng: random.Random) -> int:
        return rng.randrange(self.count)


@dataclass(frozen=True)
class ZipfKeys:
    """Hot keys: P(key i) proportional to 1 / (i+1)^s, key 0 the hottest."""

    count: int
    s: float = 1.0
    _cdf: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        weights = [1.0 / (i + 1) ** self.s for i in range(self.count)]
        total = sum(weights)
        acc, cdf = 0.0, []
        for w in weights:
            acc += w / total
            cdf.append(acc)
        cdf[-1] = 1.0
        object.__setattr__(self, "_cdf", tuple(cdf))

    def choose(self, rng: random.Random) -> int:
        return bisect.bisect_left(self._cdf, rng.random())


def key_chooser(dist: str, count: int, s: float = 1.0) -> KeyChooser:
    """The key distribution named in the spec (``uniform`` or ``zipf``)."""
    if dist == "zipf":
        return ZipfKeys(count, s)
    return UniformKeys(count)


@dataclass(frozen=True)
class FnGen:
    """A generator from a function of the context (the workloads' op makers)."""

    fn: Callable[[GenContext], OpRequest | None]

    def next(self, ctx: GenContext) -> OpRequest | None:
        return self.fn(ctx)


@dataclass(frozen=True)
class Mix:
    """Each op from one sub-generator, picked by weight (zero weights never picked)."""

    choices: tuple[tuple[float, Generator], ...]

    def __post_init__(self) -> None:
        if not any(w > 0 for w, _ in self.choices):
            raise ValueError("Mix needs at least one positive weight")

    def next(self, ctx: GenContext) -> OpRequest | None:
        total = sum(w for w, _ in self.choices if w > 0)
        x = ctx.rng.random() * total
        for w, g in self.choices:
            if w <= 0:
                continue
            x -= w
            if x < 0:
                return g.next(ctx)
        return [g for w, g in self.choices if w > 0][-1].next(ctx)  # float rounding: the last one picked


@dataclass(frozen=True)
class TimeLimit:
    """Ops from ``gen`` until ``seconds`` of the phase have passed."""

    gen: Generator
    seconds: float

    def next(self, ctx: GenContext) -> OpRequest | None:
        if ctx.elapsed >= self.seconds:
            return None
        return self.gen.next(ctx)


@dataclass(frozen=True)
class Limit:
    """At most ``count`` ops from ``gen`` per worker."""

    gen: Generator
    count: int

    def next(self, ctx: GenContext) -> OpRequest | None:
        k = f"limit:{id(self)}"
        n = ctx.state.get(k, 0)
        if n >= self.count:
            return None
        ctx.state[k] = n + 1
        return self.gen.next(ctx)


@dataclass(frozen=True)
class Stagger:
    """Jepsen's stagger: before each op wait uniform(0, 2 * mean) seconds.

    With C workers and a total ``rate``, ``mean = C / rate`` gives ``rate``
    ops per second on average while keeping arrivals irregular.
    """

    gen: Generator
    mean: float

    def next(self, ctx: GenContext) -> OpRequest | None:
        op = self.gen.next(ctx)
        if op is None or op.follows:  # a follow-up keeps its own think time
            return op
        return dataclasses.replace(op, delay=ctx.rng.uniform(0, 2 * self.mean))


@dataclass(frozen=True)
class Phases:
    """Generators one after another: the next starts when the previous says None.

    The phase clock (``ctx.elapsed``) is the caller's; a phase that needs its
    own time limit is wrapped in :class:`TimeLimit` by whoever knows when the
    phase started.
    """

    phases: tuple[Generator, ...]

    def next(self, ctx: GenContext) -> OpRequest | None:
        k = f"phase:{id(self)}"
        i = ctx.state.get(k, 0)
        while i < len(self.phases):
            op = self.phases[i].next(ctx)
            if op is not None:
                ctx.state[k] = i
                return op
            i += 1
        ctx.state[k] = i
        return None


@dataclass(frozen=True)
class EachOnce:
    """One op per item of a fixed list (final reads: one read per key)."""

    ops: tuple[OpRequest, ...]

    def next(self, ctx: GenContext) -> OpRequest | None:
        k = f"each:{id(self)}"
        i = ctx.state.get(k, 0)
        if i >= len(self.ops):
            return None
        ctx.state[k] = i + 1
        return self.ops[i]


def rate_limited(gen: Generator, rate: float, concurrency: int) -> Generator:
    """``gen`` spaced so ``concurrency`` workers together make about ``rate`` ops/s."""
    return Stagger(gen, concurrency / rate)


def take(gen: Generator, ctx: GenContext, count: int, step: float = 0.0) -> list[OpRequest]:
    """The first ``count`` ops of ``gen`` (advancing ``ctx.elapsed`` by ``step`` per op): for tests and previews."""
    out: list[OpRequest] = []
    for _ in range(count):
        op = gen.next(ctx)
        if op is None:
            break
        out.append(op)
        ctx.elapsed += step
    return out


def weighted(mix: Mapping[str, float], makers: Mapping[str, Generator]) -> Mix:
    """A Mix from ``{f: weight}`` and ``{f: generator}`` (names in the spec's order)."""
    return Mix(tuple((float(w), makers[f]) for f, w in mix.items() if f in makers))


__all__: Sequence[str] = (
    "OpRequest", "GenContext", "Generator", "worker_rng", "UniformKeys", "ZipfKeys", "key_chooser", "FnGen",
    "Mix", "TimeLimit", "Limit", "Stagger", "Phases", "EachOnce", "rate_limited", "take", "weighted",
)
