from __future__ import annotations

import io
import json
import logging

import pytest

from om_core.logs import JsonFormatter, SecretFilter, configure_logging


def _render(
    handler_filter: SecretFilter, fmt: logging.Formatter, *args: object, exc: bool = False
) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(handler_filter)
    handler.setFormatter(fmt)
    logger = logging.getLogger("test.secrets")
    logger.handlers[:] = [handler]
    logger.propagate = False
    try:
        if exc:
            try:
                raise RuntimeError("auth failed for key s3cr3t-api-key")
            except RuntimeError:
                logger.exception(*args)  # type: ignore[arg-type]
        else:
            logger.warning(*args)  # type: ignore[arg-type]
    finally:
        logger.handlers.clear()
    return stream.getvalue()


def test_configured_secrets_and_url_passwords_never_reach_the_log() -> None:
    f = SecretFilter(["s3cr3t-api-key"])
    text = _render(
        f,
        logging.Formatter("%(message)s"),
        "key=%s url=%s",
        "s3cr3t-api-key",
        "amqp://guest:hunter2@rabbit:5672/",
    )
    assert "s3cr3t" not in text and "hunter2" not in text
    assert "key=*** url=amqp://guest:***@rabbit:5672/" in text


def test_secrets_in_tracebacks_are_scrubbed_too() -> None:
    text = _render(
        SecretFilter(["s3cr3t-api-key"]), logging.Formatter("%(message)s"), "boom", exc=True
    )
    assert "RuntimeError" in text and "s3cr3t" not in text


def test_json_format_is_one_object_per_line() -> None:
    text = _render(SecretFilter(), JsonFormatter(), "hello %s", "world")
    record = json.loads(text)
    assert record["message"] == "hello world" and record["level"] == "WARNING"
    assert record["ts"].endswith("+00:00")


def test_configure_logging_installs_the_filter(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("INFO", "text", ["topsecretvalue"])
        logging.getLogger("om.test").info("value is topsecretvalue")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "value is ***" in err and "topsecretvalue" not in err
