#!/bin/sh
# Build the Order Manager wheel and install it, with exactly the versions in constraints.txt,
# into a fresh virtualenv at $1. The Dockerfile's build stage runs this, and so does
# tests/deploy/test_install.py (no container engine runs on CI): one install step for both.
#
#   scripts/build-venv.sh /opt/order-manager
#
#   PYTHON        interpreter of the new virtualenv (default python3)
#   BUILD_PYTHON  an interpreter that already has setuptools and wheel to build with (default:
#                 a throwaway virtualenv with the pinned ones)
#   COMPILE=0     skip compiling the bytecode (the image compiles it: it runs as a user that
#                 cannot write next to the sources)
set -eu

target=$1
python=${PYTHON:-python3}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pip_quiet="--quiet --disable-pip-version-check"

# Build from a copy holding only what the package is made of: the source tree stays clean.
mkdir "$work/src"
for path in pyproject.toml README.md constraints.txt om_core om_plugins plugins_builtin api migrations; do
  cp -R "$src/$path" "$work/src/$path"
done
find "$work/src" -name __pycache__ -type d -prune -exec rm -rf {} +

builder=${BUILD_PYTHON:-}
if [ -z "$builder" ]; then
  "$python" -m venv "$work/build"
  builder="$work/build/bin/python"
  # shellcheck disable=SC2086
  "$builder" -m pip install $pip_quiet -c "$src/constraints.txt" setuptools wheel
fi
# shellcheck disable=SC2086
"$builder" -m pip wheel $pip_quiet --no-deps --no-build-isolation --wheel-dir "$work/dist" "$work/src"

"$python" -m venv "$target"
# shellcheck disable=SC2086
"$target/bin/python" -m pip install $pip_quiet --no-compile -c "$src/constraints.txt" \
  "$work/dist"/order_manager-*.whl
if [ "${COMPILE:-1}" != 0 ]; then
  "$target/bin/python" -m compileall -q -j 0 "$target/lib" >/dev/null
fi
"$target/bin/om" --help >/dev/null
echo "installed $(ls "$work/dist") into $target"
