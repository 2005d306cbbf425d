"""Keyset pagination, newest first, over ``(created_at, id)``.

A page is ``WHERE (created_at, id) < (:cursor_created_at, :cursor_id) ORDER BY created_at DESC,
id DESC LIMIT :limit``: an index range scan that costs the same on the millionth row as on
the first, unlike ``OFFSET``. It is stable while rows are inserted: a new row is newer than
any cursor already handed out, so it never shifts a later page; a row committed late with an
older ``created_at`` still appears on the page its position falls in.

The cursor is the last item's ``(created_at, id)``, base64url-encoded; clients treat it as
opaque. An empty ``cursor=`` is no cursor (the first page), as the schema allows; anything
else that does not decode to a cursor of the right kind is refused with 400
``invalid_cursor`` before the database is touched.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from fastapi import Query
from pydantic import AfterValidator, AwareDatetime
from sqlalchemy.sql.elements import ColumnElement

from api.errors import ApiError
from om_core.db.types import UTCDateTime

__all__ = [
    "Cursor",
    "CursorParam",
    "LimitParam",
    "UTCTimestamp",
    "decode_cursor",
    "encode_cursor",
    "keyset",
    "next_cursor",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
_MAX_CURSOR_LENGTH = 128
_MAX_BIGINT = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PAYLOAD = re.compile(r"([a-z])\.(-?[0-9]{1,19})\.([0-9]{1,19})")

T = TypeVar("T")


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None


#: An ISO 8601 time with a timezone (a naive one is refused with 422), converted to UTC.
UTCTimestamp = Annotated[AwareDatetime, AfterValidator(_utc)]

CursorParam = Annotated[
    str | None,
    Query(
        description="`next_cursor` of the previous page; omit it (or leave it empty) for the "
        "first (newest) page.",
    ),
]
LimitParam = Annotated[
    int,
    Query(ge=1, le=MAX_LIMIT, description=f"Items per page, 1–{MAX_LIMIT}."),
]


@dataclass(frozen=True, slots=True)
class Cursor:
    created_at: datetime
    id: int


def encode_cursor(kind: str, created_at: datetime, row_id: int) -> str:
    """``kind`` (one letter) keeps an orders cursor from being used on snapshots."""
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    raw = f"{kind}.{micros}.{row_id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _invalid() -> ApiError:
    return ApiError(400, "invalid_cursor", "the cursor is not valid; start again without one")


def decode_cursor(kind: str, token: str) -> Cursor:
    if not token or len(token) > _MAX_CURSOR_LENGTH:
        raise _invalid()
    try:
        padded = token + "=" * (-len(token) % 4)
        raw = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
        match = _PAYLOAD.fullmatch(raw.decode("ascii"))
    except (UnicodeError, binascii.Error, ValueError):
        raise _invalid() from None
    if match is None or match.group(1) != kind:
        raise _invalid()
    row_id = int(match.group(3))
    if row_id > _MAX_BIGINT:
        raise _invalid()
    try:
        created_at = _EPOCH + timedelta(microseconds=int(match.group(2)))
    except OverflowError:
        raise _invalid() from None
    return Cursor(created_at, row_id)


def keyset(
    created_col: Any, id_col: Any, cursor: Cursor | None
) -> tuple[list[ColumnElement[bool]], list[Any]]:
    """The WHERE clauses and ORDER BY of one page."""
    where: list[ColumnElement[bool]] = []
    if cursor is not None:
        where.append(
            sa.tuple_(created_col, id_col)
            < sa.tuple_(
                sa.literal(cursor.created_at, UTCDateTime()),
                sa.literal(cursor.id, sa.BigInteger()),
            )
        )
    return where, [created_col.desc(), id_col.desc()]


def next_cursor(kind: str, rows: Sequence[T], limit: int) -> tuple[Sequence[T], str | None]:
    """Split the ``limit + 1`` rows fetched into the page and the cursor of the next one."""
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    last: Any = page[-1]
    return page, encode_cursor(kind, last.created_at, last.id)
