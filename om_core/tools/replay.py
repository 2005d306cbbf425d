"""``om replay``: feed recorded signals (JSON Lines) through the enabled plugins.

Default: against a fresh :mod:`sandbox <om_core.tools.sandbox>` engine on the paper exchange
(prices and instruments from the ``[plugin.paper]`` configuration), signal after signal, so
earlier signals' orders count against later signals' limits as they would in the service.
With ``preview=True``: against the configured exchange's instrument rules, prices and balance
and the database's state, through :class:`~om_core.tools.preview.Previewer`: nothing is sent
and nothing recorded, so each signal is judged on its own.

A recorded signal's ``created_at`` is dropped unless ``keep_created_at`` is set: replayed
signals are judged as if they arrived now, not rejected as stale.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from om_core.config import Settings
from om_core.signals.contract import InvalidSignal, decode_json, parse_signal, read_signal_id
from om_core.tools.outcomes import (
    OrderResult,
    Outcome,
    Reason,
    conflict_outcome,
    invalid_outcome,
    plain,
    read_outcome,
)
from om_core.tools.preview import Evaluation, standalone_previewer
from om_core.tools.sandbox import start_sandbox

__all__ = ["WOULD_PLACE", "ReplayRow", "format_table", "replay"]

#: Outcome of a signal a preview would send.
WOULD_PLACE = "would_place"


@dataclass(frozen=True, slots=True)
class ReplayRow:
    #: 1-based line number in the input.
    line: int
    outcome: Outcome
    #: The signal's side, when it could be read (also for invalid signals).
    side: str | None

    @property
    def label(self) -> str:
        return "duplicate" if self.outcome.duplicate else self.outcome.status

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "side": self.side, **self.outcome.as_dict()}


def _records(lines: Iterable[str]) -> Iterable[tuple[int, str]]:
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if text and not text.startswith("#"):
            yield number, text


def _side(data: Any) -> str | None:
    side = data.get("side") if isinstance(data, Mapping) else None
    return side.lower() if isinstance(side, str) else None


def _read(text: str, keep_created_at: bool) -> tuple[Any, Outcome | None]:
    """The decoded payload, or the outcome of a line that is not a valid signal."""
    try:
        data = decode_json(text.encode("utf-8"))
    except InvalidSignal as exc:
        return None, invalid_outcome(None, exc.problems)
    if isinstance(data, Mapping) and not keep_created_at:
        data = {k: v for k, v in data.items() if k != "created_at"}
    try:
        parse_signal(data)
    except InvalidSignal as exc:
        return data, invalid_outcome(exc.signal_id or read_signal_id(data), exc.problems)
    return data, None


async def replay(
    lines: Iterable[str],
    settings: Settings,
    *,
    plugin_env: Mapping[str, str],
    plugins: Sequence[str] | None = None,
    preview: bool = False,
    keep_created_at: bool = False,
    notes: list[str] | None = None,
) -> AsyncIterator[ReplayRow]:
    """Yield one :class:`ReplayRow` per signal line, in file order (blank lines and lines
    starting with ``#`` are skipped)."""
    if preview:
        async for row in _replay_preview(
            lines, settings, plugin_env, plugins, keep_created_at, notes
        ):
            yield row
        return
    sandbox = await start_sandbox(settings, plugin_env=plugin_env, plugins=plugins)
    try:
        processor = sandbox.service.processor
        for number, text in _records(lines):
            data, invalid = _read(text, keep_created_at)
            if invalid is not None:
                yield ReplayRow(number, invalid, _side(data))
                continue
            signal = parse_signal(data)
            result = await processor.process(signal, data)
            outcome = (
                conflict_outcome(signal.signal_id, result.reasons)
                if result.conflict
                else await read_outcome(
                    sandbox.service.sessions, signal.signal_id, duplicate=result.duplicate
                )
            )
            assert outcome is not None  # process() recorded it
            yield ReplayRow(number, outcome, signal.side.value)
    finally:
        await sandbox.stop()


async def _replay_preview(
    lines: Iterable[str],
    settings: Settings,
    plugin_env: Mapping[str, str],
    plugins: Sequence[str] | None,
    keep_created_at: bool,
    notes: list[str] | None,
) -> AsyncIterator[ReplayRow]:
    async with standalone_previewer(
        settings, plugin_env=plugin_env, plugins=plugins, notes=notes
    ) as previewer:
        for number, text in _records(lines):
            data, invalid = _read(text, keep_created_at)
            if invalid is not None:
                yield ReplayRow(number, invalid, _side(data))
                continue
            evaluation = await previewer.evaluate(parse_signal(data))
            yield ReplayRow(number, _preview_outcome(evaluation), _side(data))


def _preview_outcome(evaluation: Evaluation) -> Outcome:
    assert evaluation.signal is not None
    request = evaluation.request
    orders: tuple[OrderResult, ...] = ()
    if request is not None:
        orders = (
            OrderResult(
                client_order_id=request.client_order_id,
                symbol=request.symbol,
                category=request.category,
                side=request.side,
                order_type=request.order_type,
                qty=request.qty,
                price=request.price,
                time_in_force=request.time_in_force,
                reduce_only=request.reduce_only,
                take_profit=request.take_profit,
                stop_loss=request.stop_loss,
                status="not_sent",
            ),
        )
    return Outcome(
        signal_id=evaluation.signal.signal_id,
        status=WOULD_PLACE if request is not None else "rejected",
        orders=orders,
        reasons=tuple(
            Reason(r.plugin, r.code, r.message, dict(r.details)) for r in evaluation.rejections
        ),
    )


_HEADER = ("signal_id", "outcome", "side", "type", "qty", "price", "reasons")


def _cells(row: ReplayRow) -> list[list[str]]:
    reasons = ", ".join(str(r) for r in row.outcome.reasons) or "-"
    signal_id = row.outcome.signal_id or f"(line {row.line})"
    if not row.outcome.orders:
        return [[signal_id, row.label, row.side or "-", "-", "-", "-", reasons]]
    out = []
    for index, order in enumerate(row.outcome.orders):
        price = plain(order.price) if order.price is not None else "-"
        first = index == 0
        out.append(
            [
                signal_id if first else "",
                row.label if first else "",
                order.side.value,
                order.order_type.value,
                plain(order.qty),
                price,
                reasons if first else "",
            ]
        )
    return out


def format_table(rows: Iterable[ReplayRow]) -> str:
    """A plain-text table, one line per order (a rejected or invalid signal has one line)."""
    body = [cells for row in rows for cells in _cells(row)]
    widths = [max(len(line[i]) for line in [list(_HEADER), *body]) for i in range(len(_HEADER))]
    lines = []
    for line in [list(_HEADER), *body]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    return "\n".join(text.rstrip() for text in lines)
