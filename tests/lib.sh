# Shell helpers the test scripts under tests/ share (sourced, not run).

# pinned_venv VENV REQUIREMENTS: a virtualenv at VENV holding what REQUIREMENTS pins, made
# again only when that file changes, so later runs reuse it.
pinned_venv() {
  local venv=$1 requirements=$2
  if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
  fi
}

# free_port: a TCP port on 127.0.0.1 nothing listens on now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until_up URL PID LOG WHAT TENTHS: waits until URL answers, at most TENTHS tenths of a
# second; when PID exits first or URL never answers, prints LOG and fails saying so of WHAT.
wait_until_up() {
  local url=$1 pid=$2 log=$3 what=$4 tenths=$5
  for _ in $(seq 1 "$tenths"); do
    if curl -sf "$url" >/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$log"; echo "$what exited"; return 1; fi
    sleep 0.1
  done
  curl -sf "$url" >/dev/null || { cat "$log"; echo "$what never got ready"; return 1; }
}
