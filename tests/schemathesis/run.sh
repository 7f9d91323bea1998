#!/usr/bin/env bash
# Schemathesis against the real thing (issue 8): the built `loom serve` on an ephemeral port, on
# a database of its own on the test PostgreSQL ($LOOM_TEST_DATABASE_URL), with no gateway and no
# ticker, seeded with a little of everything, fuzzed through /api/openapi.json with an admin's
# token. Fails on any 5xx, any response its schema does not describe, any undocumented content
# type. The server is stopped and the database dropped however it ends.
#
# Reruns reuse the virtualenv under the cargo target dir and replay, first, the failing examples
# earlier runs found (schemathesis's caches live there too). SCHEMATHESIS_SEED pins the generated
# cases, to reproduce a run (each run prints its seed); SCHEMATHESIS_MAX_EXAMPLES sets how many
# cases each operation gets; arguments go to `schemathesis run` (e.g. --include-path-regex beads).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/lib.sh

: "${LOOM_TEST_DATABASE_URL:?set LOOM_TEST_DATABASE_URL to a PostgreSQL URL (.ci/run does)}"
here=tests/schemathesis
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target/schemathesis"
target=$(cd "$target" && pwd)
venv=$target/schemathesis-venv
loom=$target/debug/loom
# Schemathesis and hypothesis keep their caches (the failures found, to replay first) in the
# working directory: this one, not the source tree.
state=$target/schemathesis

# --- schemathesis, pinned, in a virtualenv the next run reuses ----------------------------
pinned_venv "$venv" "$here/requirements.txt"

# --- the binary the tests ran (built here when missing or older than the sources) ---------
if [ ! -x "$loom" ] || [ -n "$(find src migrations templates static Cargo.lock -newer "$loom" -print -quit)" ]; then
  cargo build --bin loom --locked
fi

# --- a database, a data dir and a port of this run's own ----------------------------------
work=$(mktemp -d /tmp/loom-schemathesis.XXXXXX)
db="loom_schemathesis_$$_$RANDOM"
db_url=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' \
  "$LOOM_TEST_DATABASE_URL" "$db")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  psql "$LOOM_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql "$LOOM_TEST_DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
git init -q "$work/repo"

password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
"$loom" user create --username admin --role admin --password-stdin --database-url "$db_url" \
  <<<"$password" >/dev/null

port=$(free_port)
base="http://127.0.0.1:$port"
# No LOOM_GATEWAY_*: no gateway. No ticker, dispatcher or executors: nothing changes the data
# behind schemathesis's back.
env -u LOOM_GATEWAY_URL -u LOOM_GATEWAY_API_KEY -u LOOM_GATEWAY_MODEL \
  "$loom" serve --database-url "$db_url" --bind "127.0.0.1:$port" --data-dir "$work/data" \
  --personas-dir personas --no-ticker --dispatchers 0 --no-executors \
  >"$work/loom.log" 2>&1 &
server_pid=$!
wait_until_up "$base/readyz" "$server_pid" "$work/loom.log" "loom serve" 300 || exit 1

# The seeded ids become dictionaries the configuration's operations draw path ids and bodies from.
token=$("$venv/bin/python" "$here/seed.py" "$base" admin "$password" "$work/repo" "$work/seeded.toml")
cat "$here/schemathesis.toml" "$work/seeded.toml" >"$work/schemathesis.toml"

# --- the run ------------------------------------------------------------------------------
# One worker: with two threads, hypothesis's ast.parse of its lambdas hits CPython 3.11.7's
# "AST constructor recursion depth mismatch" (a thread-safety bug fixed in later releases)
# now and then, a crash of the tool that fails the run although every case passed.
status=0
(cd "$state" && "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$base/api/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-40}" --workers 1 \
  ${SCHEMATHESIS_SEED:+--seed "$SCHEMATHESIS_SEED"} \
  --no-color "$@") || status=$?
if [ "$status" != 0 ]; then
  echo "--- the server's log (errors and warnings) ---"
  grep -E 'ERROR|WARN' "$work/loom.log" | tail -n 50 || true
fi
exit "$status"
