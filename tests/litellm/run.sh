#!/usr/bin/env bash
# Loom against a real third-party gateway (issue 18): the LiteLLM proxy, pinned, in a virtualenv
# under the cargo target dir that later runs reuse (the first install takes about a minute and
# 500-760 MB), serving a `mock_response` model whose every reply is a `done` action. Starts the
# proxy on a free port, waits for it, runs the ignored tests in tests/api/litellm.rs against it
# (a bead worked to closed, a chat reply streamed), and stops the proxy however it ends.
# Needs LOOM_TEST_DATABASE_URL, as every API test does (.ci/run sets it).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib.sh

: "${LOOM_TEST_DATABASE_URL:?set LOOM_TEST_DATABASE_URL to a PostgreSQL URL (.ci/run does)}"
here=tests/litellm
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
target=$(cd "$target" && pwd)
venv=$target/litellm-venv

# --- the proxy, pinned, in a virtualenv the next run reuses --------------------------------
pinned_venv "$venv" "$here/requirements.txt"

# --- its configuration: one mock model behind a master key ----------------------------------
work=$(mktemp -d /tmp/loom-litellm.XXXXXX)
proxy_pid=""
cleanup() {
  if [ -n "$proxy_pid" ]; then kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

export LOOM_TEST_LITELLM_MODEL=loom-mock
export LOOM_TEST_LITELLM_KEY="sk-loom-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
export LOOM_TEST_LITELLM_SUMMARY="Nothing needed changing: LiteLLM's mock model says so."
# The reply as a JSON string, which YAML reads as a double-quoted scalar.
reply=$(python3 -c 'import json, sys; print(json.dumps(json.dumps({"action": "done", "summary": sys.argv[1]})))' \
  "$LOOM_TEST_LITELLM_SUMMARY")
cat >"$work/config.yaml" <<YAML
model_list:
  - model_name: $LOOM_TEST_LITELLM_MODEL
    litellm_params:
      model: openai/$LOOM_TEST_LITELLM_MODEL
      api_key: not-used-by-a-mock
      mock_response: $reply
general_settings:
  master_key: $LOOM_TEST_LITELLM_KEY
YAML

# --- the proxy on a free port -----------------------------------------------------------------
port=$(free_port)
base="http://127.0.0.1:$port"
# The cost map ships with the package: no fetch from the internet at start.
LITELLM_LOCAL_MODEL_COST_MAP=True NO_COLOR=1 \
  "$venv/bin/litellm" --config "$work/config.yaml" --host 127.0.0.1 --port "$port" \
  >"$work/litellm.log" 2>&1 &
proxy_pid=$!
# It takes 8-30 s to start.
wait_until_up "$base/health/liveliness" "$proxy_pid" "$work/litellm.log" "the LiteLLM proxy" 1200 || exit 1
export LOOM_TEST_LITELLM_URL="$base/v1"

# --- the tests (the binary the other tests built, when it is up to date) ---------------------
status=0
cargo nextest run --locked --run-ignored only -E 'test(/litellm/)' "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- the LiteLLM proxy's log ---"
  tail -n 100 "$work/litellm.log"
fi
exit "$status"
