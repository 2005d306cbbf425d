"""Order Manager order-type plugin ``post_only``: be a maker when the signal is weak, take
liquidity when it is strong."""

from __future__ import annotations

from om_order_type_post_only.plugin import PostOnlyPlugin, PostOnlySettings

__all__ = ["PostOnlyPlugin", "PostOnlySettings"]
