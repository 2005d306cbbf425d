"""Records rendered exactly as Bybit puts them on the wire.

Field names, field order and JSON types follow the docs examples in
``tests/flow/bybit_examples``: numbers are strings (quantities padded to the
instrument's step, prices to its tick, values and fees in plain notation), ``positionIdx``,
``triggerDirection``, ``smpGroup`` and ``seq`` are integers, flags are booleans, and an absent
number is ``""``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tests.fake_bybit.instruments import Instrument
from tests.fake_bybit.model import ZERO, Execution, FakeOrder, Position

_AVG_PRICE_QUANTUM = Decimal("0.00000001")


def plain(value: Decimal) -> str:
    """``Decimal`` in plain notation without trailing zeros: ``1E+2`` → ``"100"``."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def fixed(value: Decimal, step: Decimal) -> str:
    """``value`` with exactly as many decimals as ``step`` is written with (``0.10`` → 2)."""
    exponent = step.as_tuple().exponent
    assert isinstance(exponent, int)
    return format(value.quantize(Decimal(1).scaleb(min(exponent, 0))), "f")


def average(value: Decimal | None) -> str:
    if value is None:
        return ""
    return plain(value.quantize(_AVG_PRICE_QUANTUM, rounding=ROUND_HALF_UP))


def qty_text(instrument: Instrument, value: Decimal) -> str:
    if instrument.category == "spot":
        return plain(value)
    return fixed(value, instrument.qty_step)


def price_text(instrument: Instrument, value: Decimal | None, *, absent: str) -> str:
    if value is None:
        return absent
    return fixed(value, instrument.tick_size)


def _zero_price(instrument: Instrument) -> str:
    return fixed(ZERO, instrument.tick_size)


def _order_common(order: FakeOrder) -> dict[str, Any]:
    inst = order.instrument
    spot = inst.category == "spot"
    leaves = order.leaves_qty
    return {
        "price": price_text(inst, order.price, absent="0"),
        "qty": qty_text(inst, order.qty),
        "leavesQty": qty_text(inst, leaves),
        "leavesValue": plain(inst.value(leaves, order.price)) if order.price is not None else "0",
        "cumExecQty": qty_text(inst, order.cum_exec_qty),
        "cumExecValue": plain(order.cum_exec_value),
        "cumExecFee": plain(order.cum_exec_fee),
        "avgPrice": average(_order_average(order)),
        "isLeverage": "0" if spot else "",
        "cumFeeDetail": {coin: plain(fee) for coin, fee in order.fees.items()},
    }


def _order_average(order: FakeOrder) -> Decimal | None:
    if order.cum_exec_qty == 0:
        return None
    if order.instrument.inverse:
        return order.cum_exec_qty / order.cum_exec_value  # contracts per coin: harmonic
    return order.cum_exec_value / order.cum_exec_qty


def order_rest(order: FakeOrder) -> dict[str, Any]:
    """An item of ``/v5/order/realtime`` and ``/v5/order/history``."""
    inst = order.instrument
    common = _order_common(order)
    item: dict[str, Any] = {
        "orderId": order.order_id,
        "orderLinkId": order.order_link_id,
        "blockTradeId": "",
        "symbol": inst.symbol,
        "price": common["price"],
        "qty": common["qty"],
        "side": order.side,
        "isLeverage": common["isLeverage"],
        "positionIdx": order.position_idx,
        "orderStatus": order.status,
    }
    if inst.category != "spot":
        item["createType"] = "CreateByUser"
    item.update(
        {
            "cancelType": order.cancel_type,
            "rejectReason": order.reject_reason,
            "avgPrice": common["avgPrice"],
            "leavesQty": common["leavesQty"],
            "leavesValue": common["leavesValue"],
            "cumExecQty": common["cumExecQty"],
            "cumExecValue": common["cumExecValue"],
            "cumExecFee": common["cumExecFee"],
            "timeInForce": order.time_in_force,
            "orderType": order.order_type,
            "stopOrderType": "UNKNOWN",
            "orderIv": "",
            "marketUnit": order.market_unit,
            "triggerPrice": _zero_price(inst),
            "takeProfit": price_text(inst, order.take_profit, absent=_zero_price(inst)),
            "stopLoss": price_text(inst, order.stop_loss, absent=_zero_price(inst)),
            "tpTriggerBy": "LastPrice" if order.take_profit is not None else "UNKNOWN",
            "slTriggerBy": "LastPrice" if order.stop_loss is not None else "UNKNOWN",
            "triggerDirection": 0,
            "triggerBy": "UNKNOWN",
            "lastPriceOnCreated": price_text(
                inst, order.last_price_on_created, absent=_zero_price(inst)
            ),
            "reduceOnly": order.reduce_only,
            "closeOnTrigger": order.close_on_trigger,
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "tpslMode": _tpsl_mode(order),
            "tpLimitPrice": "",
            "slLimitPrice": "",
            "placeType": "",
            "slippageToleranceType": "UNKNOWN",
            "slippageTolerance": "",
            "createdTime": str(order.created_ms),
            "updatedTime": str(order.updated_ms),
            "extraFees": "",
            "cumFeeDetail": common["cumFeeDetail"],
            "rpiTakerAccess": False,
            "rpiMatchedQty": "0",
        }
    )
    return item


def order_ws(order: FakeOrder) -> dict[str, Any]:
    """An item of the private ``order`` topic (field set of the docs' order.mdx)."""
    inst = order.instrument
    common = _order_common(order)
    return {
        "category": inst.category,
        "symbol": inst.symbol,
        "orderId": order.order_id,
        "orderLinkId": order.order_link_id,
        "parentOrderLinkId": "",
        "isLeverage": common["isLeverage"],
        "blockTradeId": "",
        "side": order.side,
        "orderType": order.order_type,
        "cancelType": order.cancel_type,
        "price": common["price"],
        "brokerOrderPrice": "",
        "qty": common["qty"],
        "orderIv": "",
        "timeInForce": order.time_in_force,
        "orderStatus": order.status,
        "createType": "CreateByUser" if inst.category != "spot" else "",
        "lastPriceOnCreated": price_text(inst, order.last_price_on_created, absent=""),
        "reduceOnly": order.reduce_only,
        "leavesQty": common["leavesQty"],
        "leavesValue": common["leavesValue"],
        "cumExecQty": common["cumExecQty"],
        "cumExecValue": common["cumExecValue"],
        "avgPrice": common["avgPrice"],
        "positionIdx": order.position_idx,
        "cumExecFee": common["cumExecFee"],
        "closedPnl": plain(order.closed_pnl),
        "createdTime": str(order.created_ms),
        "updatedTime": str(order.updated_ms),
        "rejectReason": order.reject_reason,
        "stopOrderType": "",
        "ocoTriggerBy": "",
        "marketUnit": order.market_unit,
        "slippageToleranceType": "UNKNOWN",
        "slippageTolerance": "",
        "tpslMode": _tpsl_mode(order),
        "triggerPrice": "",
        "takeProfit": price_text(inst, order.take_profit, absent=""),
        "stopLoss": price_text(inst, order.stop_loss, absent=""),
        "tpTriggerBy": "LastPrice" if order.take_profit is not None else "",
        "slTriggerBy": "LastPrice" if order.stop_loss is not None else "",
        "tpLimitPrice": "",
        "slLimitPrice": "",
        "triggerDirection": 0,
        "triggerBy": "",
        "closeOnTrigger": order.close_on_trigger,
        "placeType": "",
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "feeCurrency": order.fee_coin if inst.category == "spot" else "",
        "cumFeeDetail": common["cumFeeDetail"],
        "rpiTakerAccess": False,
        "rpiMatchedQty": "0",
    }


def _tpsl_mode(order: FakeOrder) -> str:
    if order.category == "spot" or (order.take_profit is None and order.stop_loss is None):
        return ""
    return str(order.request.get("tpslMode") or "Full")


def _execution_common(execution: Execution) -> dict[str, Any]:
    inst = execution.instrument
    return {
        "orderQty": plain(execution.order_qty),
        "orderPrice": plain(execution.order_price) if execution.order_price is not None else "0",
        "leavesQty": plain(execution.leaves_qty),
        "execQty": plain(execution.exec_qty),
        "execPrice": plain(execution.exec_price),
        "execValue": plain(execution.exec_value),
        "execFee": plain(execution.exec_fee),
        "feeRate": plain(execution.fee_rate),
        "markPrice": fixed(execution.mark_price, inst.tick_size),
        "closedSize": plain(execution.closed_size) if inst.category != "spot" else "",
        "execTime": str(execution.exec_time_ms),
    }


def execution_rest(execution: Execution) -> dict[str, Any]:
    """An item of ``/v5/execution/list``."""
    common = _execution_common(execution)
    return {
        "symbol": execution.symbol,
        "orderType": execution.order_type,
        "underlyingPrice": "",
        "orderLinkId": execution.order_link_id,
        "side": execution.side,
        "indexPrice": "",
        "orderId": execution.order_id,
        "stopOrderType": "UNKNOWN",
        "leavesQty": common["leavesQty"],
        "execTime": common["execTime"],
        # Bybit fills it on spot only (the docs' linear example has ""); derivatives pay in
        # the settle coin.
        "feeCurrency": execution.fee_coin if execution.category == "spot" else "",
        "isMaker": execution.is_maker,
        "execFee": common["execFee"],
        "feeRate": common["feeRate"],
        "execId": execution.exec_id,
        "tradeIv": "",
        "blockTradeId": "",
        "markPrice": common["markPrice"],
        "execPrice": common["execPrice"],
        "markIv": "",
        "orderQty": common["orderQty"],
        "orderPrice": common["orderPrice"],
        "execValue": common["execValue"],
        "execType": "Trade",
        "execQty": common["execQty"],
        "closedSize": common["closedSize"],
        "extraFees": "",
        "seq": execution.seq,
    }


def execution_ws(execution: Execution) -> dict[str, Any]:
    """An item of the private ``execution`` topic."""
    common = _execution_common(execution)
    return {
        "category": execution.category,
        "symbol": execution.symbol,
        "closedSize": common["closedSize"],
        "execFee": common["execFee"],
        "execId": execution.exec_id,
        "execPrice": common["execPrice"],
        "execQty": common["execQty"],
        "execType": "Trade",
        "execValue": common["execValue"],
        "feeRate": common["feeRate"],
        "tradeIv": "",
        "markIv": "",
        "blockTradeId": "",
        "markPrice": common["markPrice"],
        "indexPrice": "",
        "underlyingPrice": "",
        "leavesQty": common["leavesQty"],
        "orderId": execution.order_id,
        "orderLinkId": execution.order_link_id,
        "orderPrice": common["orderPrice"],
        "orderQty": common["orderQty"],
        "orderType": execution.order_type,
        "stopOrderType": "UNKNOWN",
        "side": execution.side,
        "execTime": common["execTime"],
        "isLeverage": "0",
        "isMaker": execution.is_maker,
        "seq": execution.seq,
        "marketUnit": execution.market_unit,
        "execPnl": plain(execution.exec_pnl),
        "createType": "CreateByUser",
        "extraFees": [],
        "feeCurrency": execution.fee_coin,
    }


def _position_numbers(position: Position, mark: Decimal) -> dict[str, Any]:
    inst = position.instrument
    flat = position.size == 0
    im = position.initial_margin
    mm = position.value * Decimal("0.005")
    return {
        "size": fixed(abs(position.size), inst.qty_step),
        "avgPrice": "0" if flat else average(position.avg_price),
        "positionValue": plain(position.value),
        "markPrice": fixed(mark, inst.tick_size),
        "positionIM": plain(im),
        "positionMM": plain(mm),
        "unrealisedPnl": plain(position.unrealised_pnl(mark)),
        "breakEvenPrice": "0" if flat else average(_break_even(position)),
    }


def _break_even(position: Position) -> Decimal:
    taker = Decimal("0.00055")
    if position.size > 0:
        return position.avg_price * (1 + taker) / (1 - taker)
    return position.avg_price * (1 - taker) / (1 + taker)


def position_rest(position: Position, mark: Decimal) -> dict[str, Any]:
    """An item of ``/v5/position/list``."""
    n = _position_numbers(position, mark)
    inst = position.instrument
    return {
        "positionIdx": position.position_idx,
        "riskId": 1,
        "riskLimitValue": "2000000",
        "symbol": inst.symbol,
        "side": position.side,
        "size": n["size"],
        "avgPrice": n["avgPrice"],
        "positionValue": n["positionValue"],
        "tradeMode": 0,
        "positionStatus": "Normal",
        "autoAddMargin": 0,
        "adlRankIndicator": 0 if position.size == 0 else 2,
        "leverage": plain(position.leverage),
        "breakEvenPrice": n["breakEvenPrice"],
        "positionBalance": n["positionIM"],
        "markPrice": n["markPrice"],
        "liqPrice": "",
        "bustPrice": "",
        "positionMM": n["positionMM"],
        "positionMMByMp": n["positionMM"],
        "positionIM": n["positionIM"],
        "positionIMByMp": n["positionIM"],
        "tpslMode": "Full",
        "takeProfit": _zero_price(inst),
        "stopLoss": _zero_price(inst),
        "trailingStop": _zero_price(inst),
        "unrealisedPnl": n["unrealisedPnl"],
        "curRealisedPnl": plain(position.cur_realised_pnl),
        "cumRealisedPnl": plain(position.cum_realised_pnl),
        "seq": position.seq,
        "isReduceOnly": False,
        "mmrSysUpdateTime": "",
        "leverageSysUpdatedTime": "",
        "sessionAvgPrice": "",
        "createdTime": str(position.created_ms),
        "updatedTime": str(position.updated_ms),
    }


def position_ws(position: Position, mark: Decimal) -> dict[str, Any]:
    """An item of the private ``position`` topic (``entryPrice`` where REST says ``avgPrice``)."""
    n = _position_numbers(position, mark)
    inst = position.instrument
    return {
        "positionIdx": position.position_idx,
        "tradeMode": 0,
        "riskId": 1,
        "riskLimitValue": "2000000",
        "symbol": inst.symbol,
        "side": position.side,
        "size": n["size"],
        "entryPrice": n["avgPrice"],
        "leverage": plain(position.leverage),
        "breakEvenPrice": n["breakEvenPrice"],
        "positionValue": n["positionValue"],
        "positionBalance": n["positionIM"],
        "markPrice": n["markPrice"],
        "positionIM": n["positionIM"],
        "positionIMByMp": n["positionIM"],
        "positionMM": n["positionMM"],
        "positionMMByMp": n["positionMM"],
        "takeProfit": "0",
        "stopLoss": "0",
        "trailingStop": "0",
        "unrealisedPnl": n["unrealisedPnl"],
        "curRealisedPnl": plain(position.cur_realised_pnl),
        "cumRealisedPnl": plain(position.cum_realised_pnl),
        "sessionAvgPrice": "0",
        "createdTime": str(position.created_ms),
        "updatedTime": str(position.updated_ms),
        "tpslMode": "Full",
        "liqPrice": "",
        "bustPrice": "",
        "category": inst.category,
        "positionStatus": "Normal",
        "adlRankIndicator": 0 if position.size == 0 else 2,
        "autoAddMargin": 0,
        "leverageSysUpdatedTime": "",
        "mmrSysUpdatedTime": "",
        "seq": position.seq,
        "isReduceOnly": False,
    }


def ticker(instrument: Instrument, last: Decimal) -> dict[str, Any]:
    """An item of ``/v5/market/tickers``; the book is one tick either side of ``last``."""
    tick = instrument.tick_size

    def p(value: Decimal) -> str:
        return fixed(value, tick)

    if instrument.category == "spot":
        return {
            "symbol": instrument.symbol,
            "bid1Price": p(last - tick),
            "bid1Size": "1",
            "ask1Price": p(last + tick),
            "ask1Size": "1",
            "lastPrice": p(last),
            "prevPrice24h": p(last),
            "price24hPcnt": "0",
            "highPrice24h": p(last),
            "lowPrice24h": p(last),
            "turnover24h": "0",
            "volume24h": "0",
            "usdIndexPrice": plain(last),
        }
    return {
        "symbol": instrument.symbol,
        "lastPrice": p(last),
        "indexPrice": p(last),
        "markPrice": p(last),
        "prevPrice24h": p(last),
        "price24hPcnt": "0",
        "highPrice24h": p(last),
        "lowPrice24h": p(last),
        "prevPrice1h": p(last),
        "openInterest": "0",
        "openInterestValue": "0",
        "turnover24h": "0",
        "volume24h": "0",
        "fundingRate": "0.0001",
        "nextFundingTime": "0",
        "predictedDeliveryPrice": "",
        "basisRate": "",
        "deliveryFeeRate": "",
        "deliveryTime": "0",
        "ask1Size": "1",
        "bid1Price": p(last - tick),
        "ask1Price": p(last + tick),
        "bid1Size": "1",
        "basis": "",
        "preOpenPrice": "",
        "preQty": "",
        "curPreListingPhase": "",
        "fundingIntervalHour": "8",
        "basisRateYear": "",
        "fundingCap": "0.005",
    }
