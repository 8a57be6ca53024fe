#!/usr/bin/env bash
# Install a real LiteLLM proxy into its own virtualenv, for logmetrics' end-to-end tests.
#
#   tests/litellm/install.sh VERSION        e.g. 1.109.1 or 1.79.3
#
# The venv goes to $LOGMETRICS_CACHE/litellm-VERSION (default: <repo>/.cache, git-ignored).
# LiteLLM is NOT a dependency of logmetrics; this is a test fixture only.
# Idempotent: when the venv already holds this exact version and a marker written after a
# successful install, it exits at once. Pinned: tests/litellm/constraints-VERSION.txt (a pip freeze
# of a working install) is applied when present; tests/litellm/requirements-VERSION.txt is the
# proxy's own requirement list (LiteLLM's `litellm[proxy]` extra, with the pins this index cannot
# satisfy loosened).
# Prints the venv path on its last line of stdout.
set -euo pipefail
# Never let an import of litellm try to fetch the price map from the network.
export LITELLM_LOCAL_MODEL_COST_MAP=True

version="${1:?usage: install.sh VERSION}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${LOGMETRICS_CACHE:-$repo/.cache}"
venv="$cache/litellm-$version"
marker="$venv/.logmetrics-installed"
python="${LOGMETRICS_PYTHON:-python3}"
reqs="$here/requirements-$version.txt"
cons="$here/constraints-$version.txt"

if [[ -f "$marker" ]] && [[ "$(cat "$marker")" == "$version" ]] \
    && [[ -x "$venv/bin/litellm" ]] \
    && "$venv/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('litellm') != '$version')" \
      >/dev/null 2>&1; then
  echo "litellm $version already installed" >&2
  echo "$venv"
  exit 0
fi

start=$(date +%s)
rm -rf "$venv"
mkdir -p "$cache"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
consargs=()
if [[ -f "$cons" ]]; then consargs=(-c "$cons"); fi

"${pip[@]}" install "${consargs[@]}" --no-deps "litellm==$version"
if [[ -f "$reqs" ]]; then
  "${pip[@]}" install "${consargs[@]}" -r "$reqs" "prometheus-client"
else
  # No vetted list for this version: use LiteLLM's own proxy extra.
  "${pip[@]}" install "${consargs[@]}" "litellm[proxy]==$version" "prometheus-client"
fi
"$venv/bin/python" -c "import litellm.proxy.proxy_server, prometheus_client" >/dev/null
echo "$version" >"$marker"
echo "installed litellm $version in $(( $(date +%s) - start ))s" >&2
echo "$venv"
