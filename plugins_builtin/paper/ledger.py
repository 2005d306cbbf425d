"""The simulated account: a USDT wallet and one net position per linear symbol.

Fills change the position; closing (part of) a position realises PnL into the wallet, and
every fill's fee is paid from it. Values are exact ``Decimal`` except where a position is
closed partly: the share of the entry cost removed is then rounded to 1e-10 USDT, and the
rounding stays inside the remaining cost, so closing the rest later realises the exact total.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal

from om_plugins import Side

__all__ = ["Ledger", "PaperPosition"]

_COST_QUANTUM = Decimal("1e-10")
_BALANCE_QUANTUM = Decimal("1e-8")


def _share(cost: Decimal, part: Decimal, whole: Decimal) -> Decimal:
    """``cost × part / whole``: exact when it can be, else rounded to 1e-10."""
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        ctx.traps[decimal.Inexact] = True
        try:
            return cost * part / whole
        except decimal.Inexact:
            pass
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        return (cost * part / whole).quantize(_COST_QUANTUM)


@dataclass(slots=True)
class PaperPosition:
    """Net position: ``size`` is signed (> 0 long); ``cost`` is |size| × average entry."""

    size: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)

    @property
    def avg_entry_price(self) -> Decimal:
        if self.size == 0:
            return Decimal(0)
        return self.cost / abs(self.size)

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        if self.size > 0:
            return self.size * mark - self.cost
        if self.size < 0:
            return self.cost - abs(self.size) * mark
        return Decimal(0)


class Ledger:
    """Wallet balance, positions, realised PnL and fees of the paper account."""

    def __init__(self, initial_balance: Decimal, leverage: Decimal) -> None:
        self.wallet_balance = initial_balance
        self.leverage = leverage
        self.positions: dict[str, PaperPosition] = {}

    def position(self, symbol: str) -> PaperPosition:
        return self.positions.setdefault(symbol, PaperPosition())

    def apply_fill(
        self, symbol: str, side: Side, qty: Decimal, price: Decimal, fee: Decimal
    ) -> Decimal:
        """Book one fill; returns the PnL it realised (before fees)."""
        pos = self.position(symbol)
        signed = side.sign * qty
        realized = Decimal(0)
        if pos.size == 0 or (pos.size > 0) == (signed > 0):
            pos.size += signed
            pos.cost += qty * price
        else:
            held = abs(pos.size)
            closing = min(qty, held)
            if closing == held:
                removed = pos.cost
            else:
                removed = _share(pos.cost, closing, held)
            exit_value = closing * price
            realized = exit_value - removed if pos.size > 0 else removed - exit_value
            direction = 1 if pos.size > 0 else -1
            pos.size = direction * (held - closing)
            pos.cost -= removed
            opening = qty - closing
            if opening > 0:
                pos.size = side.sign * opening
                pos.cost = opening * price
        self.wallet_balance += realized - fee
        return realized

    def equity(self, marks: dict[str, Decimal]) -> Decimal:
        return self.wallet_balance + sum(
            (pos.unrealized_pnl(marks[symbol]) for symbol, pos in self.positions.items()),
            Decimal(0),
        )

    def margin(self, value: Decimal) -> Decimal:
        """Initial margin for a position (or order) worth ``value``, rounded up to 1e-8."""
        with decimal.localcontext() as ctx:
            ctx.prec = 60
            return (value / self.leverage).quantize(_BALANCE_QUANTUM, decimal.ROUND_UP)

    def available(self, marks: dict[str, Decimal], order_value: Decimal) -> Decimal:
        """Equity less the margin of open positions and of ``order_value`` in open orders."""
        used = sum(
            (self.margin(abs(pos.size) * marks[symbol]) for symbol, pos in self.positions.items()),
            Decimal(0),
        )
        return self.equity(marks) - used - self.margin(order_value)
