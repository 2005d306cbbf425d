"""Bybit's codes in neutral words: one table per Bybit vocabulary, and nothing else.

* :data:`RET_CODES`: a failed request's ``retCode`` → :class:`~om_plugins.ReasonCode`
  (``docs/bybit.md`` prints this table; keep the two in step);
* :data:`REJECT_REASONS` / :data:`CANCEL_TYPES`: an order's ``rejectReason`` / ``cancelType``
  → the reason it was rejected or cancelled;
* :data:`ORDER_STATUSES` and :data:`EXEC_KINDS`: ``orderStatus`` and ``execType``.

Sources: Bybit's ``docs/v5/error.mdx`` (UTA table) and ``docs/v5/enum.mdx``. Anything not in
a table gets the table's documented default, never an error: Bybit adds values over time.
"""

from __future__ import annotations

from collections.abc import Mapping

from om_plugins import ExecKind, OrderStatus, ReasonCode

__all__ = [
    "CANCEL_TYPES",
    "EXEC_KINDS",
    "HTTP_CODES",
    "NO_CANCEL_TYPE",
    "NO_REJECT_REASON",
    "ORDER_STATUSES",
    "REJECT_REASONS",
    "RET_CODES",
    "cancel_reason_code",
    "reason_for_ret_code",
    "reject_reason_code",
]

R = ReasonCode


def _each(code: ReasonCode, *ret_codes: int) -> dict[int, ReasonCode]:
    return dict.fromkeys(ret_codes, code)


#: ``retCode`` of a refused request → its neutral meaning. Codes not listed (and ``10001``
#: when its message says nothing more precise, see :func:`reason_for_ret_code`) are
#: ``EXCHANGE_REJECTED``: read the order's ``exchange_code``.
RET_CODES: Mapping[int, ReasonCode] = {
    # 110007 "ab not enough for new order", 110004/110045 wallet balance, 110006 position
    # margin, 110012/110044 available balance/margin, 110051-110053 cannot cover the price,
    # 170131 spot "Balance insufficient", 170033 spot margin.
    **_each(
        R.INSUFFICIENT_BALANCE,
        110004,
        110006,
        110007,
        110012,
        110044,
        110045,
        110051,
        110052,
        110053,
        170033,
        170131,
    ),
    # Quantity grid and bounds: derivatives 110016 (beyond the risk limit), 110022 (may not
    # increase), 12137 (too many decimals); spot 170124 (amount too large), 170135/170136
    # (too large / below the minimum), 170137 (too many decimals), 170148 (market amount).
    **_each(R.INVALID_QTY, 110016, 110022, 12137, 170124, 170135, 170136, 170137, 170148),
    # Below the minimum order value: derivatives minNotionalValue, spot minOrderAmt.
    **_each(R.MIN_NOTIONAL, 110094, 170140),
    # Inside the tick grid but outside the allowed band.
    **_each(R.PRICE_OUT_OF_RANGE, 110003, 30208, 30209, 170132, 170133, 170193, 170194),
    # Off the tick grid, or a trigger on the wrong side of the market.
    **_each(R.INVALID_PRICE, 110092, 110093, 170134, 170218),
    # 110017 "Reduce-only rule not satisfied" / "orderQty will be truncated to zero".
    **_each(R.REDUCE_ONLY_REJECTED, 110017),
    # Switching mode with positions/orders open, mode unchanged, hedge mode not supported.
    **_each(R.POSITION_MODE, 110024, 110025, 110028, 110029),
    **_each(R.TOO_MANY_ORDERS, 110009, 110020),
    # Reduce-only phases (110023 announcement, 110042 pre-delivery), spot pairs not open.
    **_each(R.SYMBOL_NOT_TRADING, 110023, 110042, 170121, 170151, 170157),
    **_each(R.DUPLICATE_ORDER, 110030, 110072, 170141, 12141),
    # Cancel/amend of an order that is not open: never existed, filled, cancelled.
    **_each(R.ORDER_NOT_FOUND, 110001, 110008, 110010, 170139, 170142, 170143, 170213),
    **_each(R.RATE_LIMITED, 10006, 10018),
    # Signature, key, permission, IP binding, and a clock outside the receive window.
    **_each(R.AUTH, -2015, -1, 10002, 10003, 10004, 10005, 10007, 10009, 10010, 33004),
}

#: HTTP statuses Bybit's gateway answers before a request reaches the exchange.
HTTP_CODES: Mapping[int, ReasonCode] = {
    401: R.AUTH,
    # "access too frequent": the IP is banned for 10 minutes or more (rate-limit.mdx).
    403: R.IP_BANNED,
    # System-level frequency protection.
    429: R.RATE_LIMITED,
}

#: ``10001`` is Bybit's generic "Request parameter error"; its text names the parameter.
_PARAMETER_HINTS: tuple[tuple[str, ReasonCode], ...] = (
    ("position idx", R.POSITION_MODE),
    ("positionidx", R.POSITION_MODE),
    ("qty", R.INVALID_QTY),
    ("quantity", R.INVALID_QTY),
    ("number of contracts", R.INVALID_QTY),
    ("price", R.INVALID_PRICE),
    ("symbol", R.SYMBOL_NOT_TRADING),
)


def reason_for_ret_code(code: int, message: str = "") -> ReasonCode:
    """The neutral meaning of a ``retCode`` (with its ``retMsg`` for ``10001``)."""
    if code == 10001:
        text = message.lower()
        for hint, reason in _PARAMETER_HINTS:
            if hint in text:
                return reason
        return R.EXCHANGE_REJECTED
    return RET_CODES.get(code, R.EXCHANGE_REJECTED)


#: ``orderStatus`` → status. ``Rejected`` with fills is turned into ``CANCELLED`` by the
#: decoder (what filled stays filled); ``Created`` is the pre-matching state of old accounts.
ORDER_STATUSES: Mapping[str, OrderStatus] = {
    "Created": OrderStatus.NEW,
    "New": OrderStatus.NEW,
    "PartiallyFilled": OrderStatus.PARTIALLY_FILLED,
    "Untriggered": OrderStatus.UNTRIGGERED,
    "Triggered": OrderStatus.TRIGGERED,
    "Filled": OrderStatus.FILLED,
    "Cancelled": OrderStatus.CANCELLED,
    "PartiallyFilledCanceled": OrderStatus.PARTIALLY_FILLED_CANCELLED,
    "Rejected": OrderStatus.REJECTED,
    "Deactivated": OrderStatus.DEACTIVATED,
}

#: The ``rejectReason`` of an order that needs no reason.
NO_REJECT_REASON = frozenset({"", "EC_NoError"})
#: The ``cancelType`` of an order nobody cancelled.
NO_CANCEL_TYPE = frozenset({"", "UNKNOWN"})

#: ``rejectReason`` → reason; others are ``EXCHANGE_REJECTED``.
REJECT_REASONS: Mapping[str, ReasonCode] = {
    "EC_PostOnlyWillTakeLiquidity": R.POST_ONLY_WOULD_TAKE,
    "EC_NoImmediateQtyToFill": R.NO_IMMEDIATE_FILL,
    "EC_CancelForNoFullFill": R.NOT_FULLY_FILLED,
    "EC_NoEnoughQtyToFill": R.NOT_FULLY_FILLED,
    "EC_BySelfMatch": R.CANCELLED_SELF_TRADE,
    "EC_StopBySelfMatch": R.CANCELLED_SELF_TRADE,
    "EC_DuplicatedClOrdID": R.DUPLICATE_ORDER,
    "EC_OrigClOrdIDDoesNotExist": R.ORDER_NOT_FOUND,
    "EC_OrderNotExist": R.ORDER_NOT_FOUND,
    "EC_TooLateToCancel": R.ORDER_NOT_FOUND,
    "EC_InvalidSymbolStatus": R.SYMBOL_NOT_TRADING,
    "EC_InCallAuctionStatus": R.SYMBOL_NOT_TRADING,
    "EC_LimitOrderInvalidPrice": R.INVALID_PRICE,
    "EC_InvalidPriceScale": R.INVALID_PRICE,
    "EC_ReachRiskPriceLimit": R.PRICE_OUT_OF_RANGE,
    "EC_ReachMarketPriceLimit": R.PRICE_OUT_OF_RANGE,
    "EC_QtyCannotBeZero": R.INVALID_QTY,
    "EC_EcInvalidQty": R.INVALID_QTY,
    "EC_InvalidAmount": R.INVALID_QTY,
    "EC_CancelByOrderValueZero": R.INVALID_QTY,
    "EC_CancelByMatchValueZero": R.INVALID_QTY,
    "EC_PerCancelRequest": R.CANCELLED_BY_USER,
    "EC_CancelByMMP": R.CANCELLED_BY_EXCHANGE,
    "EC_ReachMaxTradeNum": R.TOO_MANY_ORDERS,
}

#: ``cancelType`` → reason; others are ``CANCELLED_BY_EXCHANGE``.
CANCEL_TYPES: Mapping[str, ReasonCode] = {
    "CancelByUser": R.CANCELLED_BY_USER,
    "CancelByReduceOnly": R.CANCELLED_REDUCE_ONLY,
    # Liquidation and auto-deleveraging both take the position away from the account.
    "CancelByPrepareLiq": R.CANCELLED_LIQUIDATION,
    "CancelAllBeforeLiq": R.CANCELLED_LIQUIDATION,
    "CancelByPrepareAdl": R.CANCELLED_LIQUIDATION,
    "CancelAllBeforeAdl": R.CANCELLED_LIQUIDATION,
    "CancelBySmp": R.CANCELLED_SELF_TRADE,
    "CancelByCrossSelfMuch": R.CANCELLED_SELF_TRADE,
    "CancelByCannotAffordOrderCost": R.INSUFFICIENT_BALANCE,
    "CancelByAdmin": R.CANCELLED_BY_EXCHANGE,
    "CancelBySettle": R.CANCELLED_BY_EXCHANGE,
    "CancelByDelivery": R.CANCELLED_BY_EXCHANGE,
    "CancelByTpSlTsClear": R.CANCELLED_BY_EXCHANGE,
    "CancelByDCP": R.CANCELLED_BY_EXCHANGE,
    "CancelByMmpTriggered": R.CANCELLED_BY_EXCHANGE,
}


def reject_reason_code(reject_reason: str) -> ReasonCode:
    return REJECT_REASONS.get(reject_reason, R.EXCHANGE_REJECTED)


def cancel_reason_code(cancel_type: str) -> ReasonCode:
    return CANCEL_TYPES.get(cancel_type, R.CANCELLED_BY_EXCHANGE)


#: ``execType`` → kind. ``BlockTrade`` and ``MovePosition`` change the position like a trade
#: does; everything else (``Funding``'s fee, unknown types) moves no position.
EXEC_KINDS: Mapping[str, ExecKind] = {
    "Trade": ExecKind.TRADE,
    "BlockTrade": ExecKind.TRADE,
    "MovePosition": ExecKind.TRADE,
    "BustTrade": ExecKind.LIQUIDATION,
    "AdlTrade": ExecKind.ADL,
    "Delivery": ExecKind.DELIVERY,
    "Settle": ExecKind.DELIVERY,
    "Funding": ExecKind.FUNDING,
}
