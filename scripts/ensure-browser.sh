#!/usr/bin/env bash
# Install Debian's chromium for the console's browser tests when it is missing and this
# machine can (root with apt-get). Playwright never downloads a browser here: the tests point
# it at this one. Where it cannot be installed the browser tests are skipped, or fail under
# OM_REQUIRE_SERVICES=1 (CI).
set -u

if command -v chromium >/dev/null 2>&1 || [ -n "${OM_CHROMIUM:-}" ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: chromium is not installed; the browser tests will be skipped" >&2
  exit 0
fi
echo "installing chromium (Debian package) for the browser tests"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q chromium >/dev/null 2>&1; then
  # The package lists may be missing or stale on a fresh machine.
  apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1 ||
    echo "warning: could not install chromium; the browser tests will be skipped" >&2
fi
exit 0
