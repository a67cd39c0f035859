"""The shopping cart of the Dynamo paper.

Carts ``cart-0`` .. ``cart-{keys-1}`` hold sorted lists of int items. An
``add``/``remove`` is a read-modify-write: read every sibling, merge them by
union (the paper's cart merge), add or drop the item, write back with the
read's causal context. Items are unique (``counter * concurrency + worker``)
and a worker only removes items it added to that cart earlier, so a removed
item is never re-added: an acknowledged add missing from the final read is
a lost write, a removed item present in it is a resurrection.

``blind = true`` makes every add a blind write (no read, no context, value
``[item]``): each one a new sibling under per-node vector clocks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from harness.generators import FnGen, GenContext, Generator, OpRequest, key_chooser, weighted
from harness.workloads import Completion, WorkloadKind, attempt

if TYPE_CHECKING:
    from harness.spec import WorkloadSpec
    from targets.adapter import TargetClient


def cart_key(i: int) -> str:
    return f"cart-{i}"


def merge_siblings(values: Iterable[Any]) -> set[int]:
    """Union of the items of every sibling (what the paper's cart client does)."""
    items: set[int] = set()
    for v in values:
        if isinstance(v, list):
            items.update(x for x in v if isinstance(x, int) and not isinstance(x, bool))
        elif isinstance(v, int) and not isinstance(v, bool):
            items.add(v)
    return items


@dataclass(frozen=True)
class CartWorkload:
    spec: "WorkloadSpec"
    concurrency: int
    name: str = "cart"

    @property
    def checkers(self) -> tuple[str, ...]:
        return KIND.checkers

    def final_keys(self) -> list[str]:
        return [cart_key(i) for i in range(self.spec.keys)]

    def generator(self) -> Generator:
        keys = key_chooser(self.spec.key_dist, self.spec.keys, self.spec.zipf_s)
        blind = self.spec.blind

        def new_item(ctx: GenContext) -> int:
            n = ctx.state.get("cart:counter", 0) + 1
            ctx.state["cart:counter"] = n
            return n * self.concurrency + ctx.worker

        def add(ctx: GenContext) -> OpRequest:
            key = cart_key(keys.choose(ctx.rng))
            item = new_item(ctx)
            ctx.state.setdefault("cart:added", {}).setdefault(key, []).append(item)
            return OpRequest("add", key, item, extra={"blind": True} if blind else {})

        def remove(ctx: GenContext) -> OpRequest:
            key = cart_key(keys.choose(ctx.rng))
            mine = ctx.state.setdefault("cart:added", {}).get(key)
            if not mine:
                return add(ctx)
            item = mine.pop(ctx.rng.randrange(len(mine)))
            return OpRequest("remove", key, item)

        def read(ctx: GenContext) -> OpRequest:
            return OpRequest("read", cart_key(keys.choose(ctx.rng)))

        return weighted(self.spec.mix, {"add": FnGen(add), "remove": FnGen(remove), "read": FnGen(read)})

    async def execute(self, client: "TargetClient", req: OpRequest, session: dict[str, Any]) -> Completion:
        assert req.key is not None
        if req.f == "read":
            return await self.final_read(client, req.key)
        if req.extra.get("blind"):
            _, err = await attempt(client.put(req.key, [req.value], None), req.value)
            return err or Completion.ok(req.value)
        # nothing is written when the read fails: the add/remove definitely did not happen
        rr, err = await attempt(client.get(req.key), req.value, prefix="read before write: ",
                                indeterminate_is_fail=True)
        if err:
            return err
        items = merge_siblings(rr.values)
        if req.f == "add":
            items.add(req.value)
        else:
            items.discard(req.value)
        seen = len(rr.values)
        _, err = await attempt(client.put(req.key, sorted(items), rr.context), req.value, seen)
        return err or Completion.ok(req.value, seen)

    async def final_read(self, client: "TargetClient", key: str) -> Completion:
        rr, err = await attempt(client.get(key))
        if err:
            return err
        return Completion.ok(sorted(merge_siblings(rr.values)), len(rr.values), context_bytes=len(rr.context or ""))


def build(spec: "WorkloadSpec", concurrency: int, node_names: tuple[str, ...]) -> CartWorkload:
    """The cart workload for this spec."""
    return CartWorkload(spec, concurrency)


KIND = WorkloadKind("cart", build, {"add": 6.0, "remove": 1.0, "read": 3.0},
                    ("lost-writes", "resurrections", "siblings", "perf", "convergence"))
