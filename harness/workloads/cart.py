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

**Real deletes** (op ``delete``, weight 0 unless the mix gives one): a cart
remove is a rewrite, so no tombstone ever exists; a ``delete`` reads the cart
and sends DELETE with the read's context, so the store keeps a tombstone
covering what was read. Each draw of ``delete`` advances the worker's own
*bin* cycle: :data:`BIN_FILL` adds to a bin cart ``cart-w{worker}-{n}`` (only
its worker writes it), the delete, one read after it, then the next bin. A bin
is never written after its delete, so an item of it in the final read is a
deleted item the store brought back (``checkers.resurrections``), not the
cart's known remove-resurrection by a stale read-modify-write. The delete
records the items its read saw (completion value) and their sibling count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from harness.generators import FnGen, GenContext, Generator, OpRequest, key_chooser, weighted
from harness.workloads import Completion, WorkloadKind, attempt

if TYPE_CHECKING:
    from harness.spec import WorkloadSpec
    from targets.adapter import TargetClient


#: Adds to a bin cart before it is deleted.
BIN_FILL = 3


def cart_key(i: int) -> str:
    return f"cart-{i}"


def bin_key(worker: int, n: int) -> str:
    """The ``n``-th bin cart of a worker: written by that worker only, deleted once, read after."""
    return f"cart-w{worker}-{n}"


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
    #: the bin carts the generators have used (the final reads cover them too)
    bins: set[str] = field(default_factory=set, compare=False, repr=False)

    @property
    def checkers(self) -> tuple[str, ...]:
        return KIND.checkers

    def final_keys(self) -> list[str]:
        return [cart_key(i) for i in range(self.spec.keys)] + sorted(self.bins)

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

        def bin_step(ctx: GenContext) -> OpRequest:
            """One step of the worker's bin cycle: fill, delete, read after, next bin."""
            n, step = ctx.state.get("cart:bin", (0, 0))
            ctx.state["cart:bin"] = (n + 1, 0) if step == BIN_FILL + 1 else (n, step + 1)
            key = bin_key(ctx.worker, n)
            self.bins.add(key)
            if step < BIN_FILL:
                return OpRequest("add", key, new_item(ctx))
            return OpRequest("delete" if step == BIN_FILL else "read", key)

        return weighted(self.spec.mix, {"add": FnGen(add), "remove": FnGen(remove), "read": FnGen(read),
                                        "delete": FnGen(bin_step)})

    async def execute(self, client: "TargetClient", req: OpRequest, session: dict[str, Any]) -> Completion:
        assert req.key is not None
        if req.f == "read":
            return await self.final_read(client, req.key)
        if req.f == "delete":
            return await self._delete(client, req.key)
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

    async def _delete(self, client: "TargetClient", key: str) -> Completion:
        """Read the cart, then DELETE with the read's context: a tombstone covering what was read."""
        rr, err = await attempt(client.get(key), prefix="read before delete: ", indeterminate_is_fail=True)
        if err:
            return err
        seen, versions = sorted(merge_siblings(rr.values)), len(rr.values)
        _, err = await attempt(client.delete(key, rr.context), seen, versions)
        return err or Completion.ok(seen, versions)

    async def final_read(self, client: "TargetClient", key: str) -> Completion:
        rr, err = await attempt(client.get(key))
        if err:
            return err
        return Completion.ok(sorted(merge_siblings(rr.values)), len(rr.values), context_bytes=len(rr.context or ""))


def build(spec: "WorkloadSpec", concurrency: int, node_names: tuple[str, ...]) -> CartWorkload:
    """The cart workload for this spec."""
    return CartWorkload(spec, concurrency)


KIND = WorkloadKind("cart", build, {"add": 6.0, "remove": 1.0, "read": 3.0, "delete": 0.0},
                    ("lost-writes", "resurrections", "siblings", "perf", "convergence"))
