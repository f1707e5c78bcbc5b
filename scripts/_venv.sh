# Sourced by scripts/test and scripts/quickstart: create .venv and install llmfleet into it,
# re-installing only when pyproject.toml (or the extras asked for) changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
EXTRAS="${1:-}"
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "llmfleet needs Python >= 3.11 (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv ..." >&2
  "$PY" -m venv .venv
fi
STAMP=".venv/.llmfleet-installed${EXTRAS:+-$EXTRAS}"
WANT="$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "installing llmfleet${EXTRAS:+[$EXTRAS]} into .venv (first run takes a minute) ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${EXTRAS:+[$EXTRAS]}" 2>&1 \
    | grep -v "is ignored: it is neither" >&2 || true
  .venv/bin/python -c "import controller, solvers, schemas" || { echo "install failed" >&2; exit 2; }
  echo "$WANT" > "$STAMP"
fi
