"""The read endpoints of the fake exchange: orders, executions, positions, wallet, market.

Each method takes the decoded query string and returns the ``result`` object of Bybit's
envelope, or raises :class:`BybitError` for a ``retCode`` 10001 answer. Lists come newest
first, ``limit`` at a time, with Bybit-style opaque percent-encoded ``nextPageCursor`` values
(``""`` on the last page).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import unquote

from tests.fake_bybit import wire
from tests.fake_bybit.model import BybitError, FakeOrder
from tests.fake_bybit.params import QueryParams
from tests.fake_bybit.rules import CATEGORIES
from tests.fake_bybit.state import MISSING_SCOPE, Exchange

_CURSOR = re.compile(r"page_args=(\d+)")
_SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000
#: Cancelled, rejected and deactivated orders without fills stay in the history this long.
_UNFILLED_KEPT_MS = 24 * 3600 * 1000
_UNFILLED_ENDS = frozenset({"Cancelled", "Rejected", "Deactivated"})

T = TypeVar("T")


class Queries:
    """Bybit's GET endpoints over one :class:`Exchange`."""

    def __init__(self, exchange: Exchange) -> None:
        self._x = exchange

    def _category(self, q: QueryParams) -> str:
        category = q.text("category")
        if category not in CATEGORIES:
            raise BybitError(10001, "Illegal category")
        return category

    def _orders_matching(self, q: QueryParams, category: str) -> list[FakeOrder] | None:
        """Orders selected by Bybit's priority orderId > orderLinkId; ``None``: not by id."""
        order_id, link = q.text("orderId"), q.text("orderLinkId")
        if order_id:
            found = self._x.orders_by_id.get(order_id)
        elif link:
            found = self._x.orders_by_link.get(link)
        else:
            return None
        if found is None or found.category != category:
            return []
        return [found]

    def _scoped(self, orders: Iterable[FakeOrder], q: QueryParams) -> list[FakeOrder]:
        symbol, base, settle = q.text("symbol"), q.text("baseCoin"), q.text("settleCoin")
        return [
            o
            for o in orders
            if (not symbol or o.symbol == symbol)
            and (not base or o.instrument.base_coin == base)
            and (not settle or o.instrument.settle_coin == settle)
        ]

    def realtime(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v5/order/realtime``: open orders, and recent closed ones with ``openOnly=1``."""
        q = QueryParams(query)
        category = self._category(q)
        if category == "linear" and not (
            q.text("symbol") or q.text("baseCoin") or q.text("settleCoin")
        ):
            raise BybitError(10001, MISSING_SCOPE)
        open_only = q.integer("openOnly", default=0, low=0, high=2)
        limit = q.integer("limit", default=20, low=1, high=50)
        q.text("orderFilter")
        selected = self._orders_matching(q, category)
        if selected is None:
            selected = [
                o
                for o in self._x.orders_by_id.values()
                if o.category == category and (o.is_open or open_only != 0)
            ]
        visible = [o for o in self._scoped(selected, q) if o.in_realtime]
        return self._page_of_orders(visible, category, limit, q.text("cursor"))

    def history(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v5/order/history``: orders of the last seven days, any status, except
        cancelled/rejected/deactivated orders without fills older than 24 h (order-list.mdx)."""
        q = QueryParams(query)
        category = self._category(q)
        limit = q.integer("limit", default=20, low=1, high=50)
        start, end = self._time_window(q)
        status = q.text("orderStatus")
        q.text("orderFilter")
        selected = self._orders_matching(q, category)
        if selected is None:
            selected = [
                o
                for o in self._x.orders_by_id.values()
                if o.category == category and start <= o.created_ms <= end
            ]
        now = self._x.now_ms()
        chosen = [
            o
            for o in self._scoped(selected, q)
            if (not status or o.status == status)
            and not (
                o.status in _UNFILLED_ENDS
                and o.cum_exec_qty == 0
                and now - o.updated_ms > _UNFILLED_KEPT_MS
            )
        ]
        return self._page_of_orders(chosen, category, limit, q.text("cursor"))

    def _time_window(self, q: QueryParams) -> tuple[int, int]:
        start_text, end_text = q.text("startTime"), q.text("endTime")
        if bool(start_text) != bool(end_text):
            raise BybitError(10001, "params error: startTime and endTime must be passed together")
        if not start_text:
            now = self._x.now_ms()
            return now - _SEVEN_DAYS_MS, now + 1
        try:
            start, end = int(start_text), int(end_text)
        except ValueError:
            raise BybitError(10001, "params error: startTime or endTime invalid") from None
        if end < start or end - start > _SEVEN_DAYS_MS:
            raise BybitError(10001, "params error: time range must be within 7 days")
        return start, end

    def _page_of_orders(
        self, orders: list[FakeOrder], category: str, limit: int, cursor: str
    ) -> dict[str, Any]:
        page, next_cursor = _page(orders, limit, cursor, key=lambda o: o.index)
        return {
            "list": [wire.order_rest(o) for o in page],
            "nextPageCursor": next_cursor,
            "category": category,
        }

    def execution_list(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v5/execution/list``, newest first."""
        q = QueryParams(query)
        category = self._category(q)
        limit = q.integer("limit", default=50, low=1, high=100)
        start, end = self._time_window(q)
        symbol, base = q.text("symbol"), q.text("baseCoin")
        order_id, link = q.text("orderId"), q.text("orderLinkId")
        exec_type = q.text("execType")
        chosen = [
            e
            for e in self._x.executions
            if e.category == category
            and start <= e.exec_time_ms <= end
            and (not symbol or e.symbol == symbol)
            and (not base or e.instrument.base_coin == base)
            and (not order_id or e.order_id == order_id)
            and (not link or e.order_link_id == link)
            and (not exec_type or exec_type == "Trade")
        ]
        page, next_cursor = _page(chosen, limit, q.text("cursor"), key=lambda e: e.seq)
        return {
            "nextPageCursor": next_cursor,
            "category": category,
            "list": [wire.execution_rest(e) for e in page],
        }

    def position_list(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v5/position/list``: a symbol's positions even when flat (both sides in
        hedge mode), else the category's open ones."""
        q = QueryParams(query)
        category = q.text("category")
        if category not in ("linear", "inverse", "option"):
            raise BybitError(10001, "Illegal category")
        limit = q.integer("limit", default=20, low=1, high=200)
        symbol, settle, base = q.text("symbol"), q.text("settleCoin"), q.text("baseCoin")
        if category == "linear" and not (symbol or settle or base):
            raise BybitError(10001, MISSING_SCOPE)
        if symbol:
            inst = self._x.instruments.get((category, symbol))
            if inst is None:
                raise BybitError(10001, "params error: symbol invalid")
            positions = self._x.position_sides(inst)
        else:
            positions = [
                p
                for p in self._x.positions.values()
                if p.instrument.category == category
                and p.size != 0
                and (not settle or p.instrument.settle_coin == settle)
                and (not base or p.instrument.base_coin == base)
            ]
        positions.sort(key=lambda p: (p.instrument.symbol, p.position_idx))
        ranked = {id(p): i for i, p in enumerate(reversed(positions), start=1)}
        page, next_cursor = _page(positions, limit, q.text("cursor"), key=lambda p: ranked[id(p)])
        return {
            "list": [wire.position_rest(p, self._x.prices[p.instrument.symbol]) for p in page],
            "nextPageCursor": next_cursor,
            "category": category,
        }

    def fee_rate(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v5/account/fee-rate``: the account's (taker, maker) rates per symbol."""
        q = QueryParams(query)
        category = self._category(q)
        if category == "option":
            raise BybitError(10001, "fake-bybit: options not supported")
        symbol = q.text("symbol")
        listed = [i for i in self._x.instruments.values() if i.category == category]
        if symbol:
            listed = [i for i in listed if i.symbol == symbol]
            if not listed:
                raise BybitError(10001, "params error: symbol invalid")
        taker, maker = self._x.fee_rates[category]
        items: list[dict[str, Any]] = []
        for inst in sorted(listed, key=lambda i: i.symbol):
            item: dict[str, Any] = {"symbol": inst.symbol}
            if category == "spot":
                item["baseCoin"] = ""
            item.update(takerFeeRate=wire.plain(taker), makerFeeRate=wire.plain(maker))
            items.append(item)
        result: dict[str, Any] = {"list": items}
        if category == "spot":
            result = {"category": "spot", **result}
        return result

    def wallet_balance(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v5/account/wallet-balance?accountType=UNIFIED``."""
        q = QueryParams(query)
        account_type = q.text("accountType")
        if account_type != "UNIFIED":
            raise BybitError(10001, "accountType only support UNIFIED.")
        coin = q.text("coin")
        coins = {c for c in coin.split(",") if c} if coin else None
        return {"list": [self._x.wallet_account(coins)]}

    def instruments_info(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v5/market/instruments-info``."""
        q = QueryParams(query)
        category = self._category(q)
        q.integer("limit", default=500, low=1, high=1000)
        symbol, status, base = q.text("symbol"), q.text("status"), q.text("baseCoin")
        items = [
            dict(inst.info)
            for inst in self._x.instruments.values()
            if inst.category == category
            and (not symbol or inst.symbol == symbol)
            and (not status or inst.info.get("status") == status)
            and (not base or inst.base_coin == base)
        ]
        result: dict[str, Any] = {"category": category, "list": items}
        if category != "spot":
            result["nextPageCursor"] = ""
        return result

    def tickers(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v5/market/tickers``."""
        q = QueryParams(query)
        category = self._category(q)
        symbol = q.text("symbol")
        listed = [i for i in self._x.instruments.values() if i.category == category]
        if symbol:
            listed = [i for i in listed if i.symbol == symbol]
            if not listed:
                raise BybitError(10001, "Not supported symbols")
        return {
            "category": category,
            "list": [wire.ticker(i, self._x.prices[i.symbol]) for i in listed],
        }


def _page(
    items: list[T], limit: int, cursor: str, *, key: Callable[[T], int]
) -> tuple[list[T], str]:
    """Newest first, ``limit`` at a time; Bybit-style opaque, percent-encoded cursors."""
    ordered = sorted(items, key=key, reverse=True)
    if cursor:
        # The query string was decoded once already; a client that encoded the cursor a
        # second time still names the same page.
        match = _CURSOR.search(unquote(unquote(cursor)))
        if match is None:
            raise BybitError(10001, "params error: cursor invalid")
        after = int(match.group(1))
        ordered = [item for item in ordered if key(item) < after]
    page = ordered[:limit]
    if len(ordered) <= limit:
        return page, ""
    return page, f"page_args%3D{key(page[-1])}%26"
