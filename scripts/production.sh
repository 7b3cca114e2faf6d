#!/usr/bin/env bash
# kiemdiem in production on one or more machines: PostgreSQL for kiemdiem and for Prefect, a
# Prefect server, a process work pool with several workers, the deployments from prefect.yaml,
# and the dashboard under uvicorn with several worker processes. All configuration is by
# environment (see the README, section "Production"). Usage:
#
#   scripts/production.sh setup     # venv, databases, migrations, work pool, deployments
#   scripts/production.sh start     # server, workers, dashboard (background; pids and logs in $KIEMDIEM_RUN)
#   scripts/production.sh status
#   scripts/production.sh workers   # on another machine: workers only, for the server at PREFECT_API_URL
#   scripts/production.sh backup    # pg_dump of both databases + a copy of the file store; keeps the newest KIEMDIEM_BACKUP_KEEP
#   scripts/production.sh restore T # stop, both databases and the files back from backup T, migrate
#   scripts/production.sh upgrade   # stop, backup, reinstall, migrate (Alembic), start, redeploy
#   scripts/production.sh stop
#   scripts/production.sh systemd [workers]  # systemd units that start it all at boot and restart what fails
#   scripts/production.sh run NAME  # one process in the foreground (prefect-server, worker N, web): what the units run
#   scripts/production.sh kiemdiem ARGS  # the kiemdiem command on the production database and files
#
# start, stop and status go through systemctl once the units are enabled (kiemdiem.target).
set -euo pipefail
# Dumps, logs and the data directory hold members' names, emails and password hashes: the
# service user's only.
umask 077
CALLER_DIR=$(pwd)
cd "$(dirname "$(readlink -f "$0")")/.."  # the repository, also when called through a symlink
REPO=$(pwd)
SCRIPT="$REPO/scripts/production.sh"
# A relative KIEMDIEM_HOME means the caller's directory, not the repository.
case "${KIEMDIEM_HOME:-/}" in /*) ;; *) KIEMDIEM_HOME="$CALLER_DIR/$KIEMDIEM_HOME" ;; esac

# The configuration `systemd` saved: every variable the shell does not set itself comes from it,
# so the units and an administrator's commands run with the same settings.
ENV_FILE=${KIEMDIEM_ENV_FILE:-${KIEMDIEM_HOME:-/var/lib/kiemdiem}/kiemdiem.env}
if [ -r "$ENV_FILE" ]; then
  while IFS= read -r line; do
    case "$line" in ''|'#'*) continue ;; esac
    key=${line%%=*}; value=${line#*=}; value=${value#\'}; value=${value%\'}
    case "$key" in ''|[0-9]*|*[!A-Za-z0-9_]*) continue ;; esac
    [ -n "${!key+x}" ] || export "$key=$value"
  done <"$ENV_FILE"
elif [ -e "$ENV_FILE" ]; then
  printf 'warning: %s cannot be read by %s: its settings are not used (run as the service user)\n' "$ENV_FILE" "$(id -un)" >&2
fi
# What was given (the shell, the saved file): `systemd` saves these only, never the values worked
# out below from them, so a changed port or home is not contradicted by a stale derived one.
GIVEN=$(compgen -e | grep -E '^(KIEMDIEM_|PREFECT_|VENV$)' | grep -v '^KIEMDIEM_ENV_FILE$' | sort || true)

: "${KIEMDIEM_HOME:=/var/lib/kiemdiem}"
: "${KIEMDIEM_DATABASE_URL:=postgresql://postgres@127.0.0.1:5432/kiemdiem}"
: "${PREFECT_DATABASE_URL:=postgresql+asyncpg://postgres@127.0.0.1:5432/prefect}"
: "${PREFECT_PORT:=4200}"
: "${PREFECT_SERVER_HOST:=127.0.0.1}"  # 0.0.0.0 when workers on other machines reach this server
: "${KIEMDIEM_WORKERS:=2}"            # Prefect process workers
: "${KIEMDIEM_WEB_WORKERS:=2}"        # uvicorn worker processes for the dashboard
: "${KIEMDIEM_WEB_HOST:=127.0.0.1}"
: "${KIEMDIEM_WEB_PORT:=8080}"
: "${KIEMDIEM_RUN:=$KIEMDIEM_HOME/run}"
: "${KIEMDIEM_BACKUPS:=$KIEMDIEM_HOME/backups}"
: "${KIEMDIEM_CAMPAIGN:=}"            # the campaign the hourly tick deployment runs
: "${KIEMDIEM_LOG_MAX_MB:=100}"       # a log larger than this is rotated when its process starts
: "${VENV:=$REPO/.venv}"
: "${KIEMDIEM_BACKUP_AT:=02:30}"       # the nightly backup's time (Vietnam), when systemd runs it
: "${KIEMDIEM_BACKUP_KEEP:=14}"        # backups kept: after each one, the oldest beyond this many are deleted
: "${KIEMDIEM_ROLE:=all}"              # all: server, workers, dashboard; workers: a machine with workers only

export KIEMDIEM_HOME KIEMDIEM_DATABASE_URL KIEMDIEM_CAMPAIGN KIEMDIEM_WEB_HOST KIEMDIEM_WEB_PORT
# For the processes this script starts (`systemd` saves only what was given, see GIVEN).
export PREFECT_DATABASE_URL PREFECT_PORT PREFECT_SERVER_HOST KIEMDIEM_WORKERS KIEMDIEM_WEB_WORKERS KIEMDIEM_RUN \
  KIEMDIEM_BACKUPS KIEMDIEM_LOG_MAX_MB KIEMDIEM_BACKUP_AT KIEMDIEM_BACKUP_KEEP KIEMDIEM_ROLE VENV
export KIEMDIEM_REPO="$REPO"
# Workers on another machine set it to the server's address.
export PREFECT_API_URL="${PREFECT_API_URL:-http://127.0.0.1:${PREFECT_PORT}/api}"
export PREFECT_SERVER_DATABASE_CONNECTION_URL="$PREFECT_DATABASE_URL"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
# Only `upgrade` (after a backup) migrates; anything else refuses an outdated schema.
export KIEMDIEM_AUTO_MIGRATE=false
export PREFECT_HOME="${PREFECT_HOME:-$KIEMDIEM_HOME/prefect}"

BIN="$VENV/bin"
POOL=kiemdiem-process
STOP_TIMEOUT=10  # seconds a process has to exit after SIGTERM before `stop` kills it

log() { printf '%s %s\n' "$(date -u +%FT%TZ)" "$*"; }

database_name() { local url=${1%%\?*}; echo "${url##*/}"; }
admin_url() { local url=${1%%\?*}; url=${url/postgresql+asyncpg:/postgresql:}; url=${url/postgresql+psycopg:/postgresql:}; echo "${url%/*}/postgres"; }

masked() { sed -E 's#^(([^:/@]+://)?[^:/@]*:)[^@]*@#\1***@#' <<<"$1"; }  # a URL with its password as ***

ensure_database() {  # ensure_database VARIABLE: the database its URL names, created if missing
  local variable=$1 url=${!1} name found
  name=$(database_name "$url")
  # Asked apart from the test below: a server that does not answer is said once, naming the setting.
  if ! found=$(psql "$(admin_url "$url")" -tAc "SELECT 1 FROM pg_database WHERE datname='$name'"); then
    log "$variable=$(masked "$url"): psql cannot connect with it (its message above): fix the address (server, port, user, password) or start the server" >&2
    exit 2
  fi
  if [ "$found" != 1 ]; then
    log "creating database $name"
    psql "$(admin_url "$url")" -c "CREATE DATABASE \"$name\"" >/dev/null
  fi
}

recreate_database() {
  local url=$1 name
  name=$(database_name "$url")
  psql "$(admin_url "$url")" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null
  psql "$(admin_url "$url")" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE \"$name\"" >/dev/null
}

copy_new() {  # copy_new SRC DST: the files of SRC that DST lacks; none is overwritten
  mkdir -p "$2"
  cp -a -n "$1/." "$2/" && return 0
  # coreutils 9.2-9.4 exit 1 when -n skips a file: an error only if a file is still missing.
  (cd "$1" && find . -type f) | while IFS= read -r file; do
    [ -e "$2/$file" ] || { log "not copied: $1/$file"; return 1; }
  done
}

wait_for_api() {
  local pidfile="$KIEMDIEM_RUN/prefect-server.pid"
  for _ in $(seq 1 120); do
    curl -fsS "$PREFECT_API_URL/health" >/dev/null 2>&1 && return 0
    # A server that exited (a wrong PREFECT_DATABASE_URL, a port taken) will not answer: say so now.
    if [ -f "$pidfile" ] && ! running "$pidfile"; then
      log "Prefect server exited; see $KIEMDIEM_RUN/prefect-server.log:"; tail -n 5 "$KIEMDIEM_RUN/prefect-server.log" >&2 || true
      return 1
    fi
    sleep 1
  done
  log "Prefect server did not answer at $PREFECT_API_URL; see $KIEMDIEM_RUN/prefect-server.log"; return 1
}

# Whether a pid file names a live process of ours: a pid file left by a reboot may name another
# program's process by now, which must be neither trusted nor killed.
running() {
  local pid command
  [ -f "$1" ] || return 1
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 1
  # Read whole, not piped into `grep -q`: under pipefail its early exit would fail the check.
  command=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  # Empty for an instant while a process execs (ours replaces the script by prefect or uvicorn).
  [[ -z $command || $command == *prefect* || $command == *uvicorn* || $command == *production.sh* ]]
}

spawn() {  # spawn NAME COMMAND...: background, pid file, log file
  local name=$1; shift
  mkdir -p "$KIEMDIEM_RUN"
  if running "$KIEMDIEM_RUN/$name.pid"; then
    log "$name already running"; return 0
  fi
  rotate_log "$KIEMDIEM_RUN/$name.log"
  # bash starts a background command with SIGINT and SIGQUIT ignored (no job control in a script),
  # and an ignored signal stays ignored through exec: a Prefect worker, which answers SIGTERM by
  # sending itself SIGINT, would then ignore it and only die by SIGKILL after STOP_TIMEOUT. The
  # subshell gives both back their default before it becomes the process (same pid, see $!).
  ( trap - INT QUIT; exec setsid "$@" >>"$KIEMDIEM_RUN/$name.log" 2>&1 </dev/null ) &
  echo $! >"$KIEMDIEM_RUN/$name.pid"
  log "started $name (pid $!)"
}

rotate_log() {  # at each start, a log over KIEMDIEM_LOG_MAX_MB moves to .1, .1 to .2 (two kept)
  local file=$1 size
  [ -f "$file" ] || return 0
  size=$(wc -c <"$file")
  if [ "$size" -gt $((KIEMDIEM_LOG_MAX_MB * 1024 * 1024)) ]; then
    [ -f "$file.1" ] && mv -f "$file.1" "$file.2"
    mv -f "$file" "$file.1"
  fi
}

# SIGTERM to the process group `spawn` made (the process is its leader), then SIGKILL to what is
# left after STOP_TIMEOUT: a process that hangs. A Prefect worker stops on SIGTERM in about a second
# (it turns it into SIGINT, see spawn). A flow run it is running at that moment (its own process,
# in its own session) is ended by the worker as it exits, midway; Prefect goes on showing that run
# as Running. Nothing is lost: every step of a tick is idempotent and the next hourly tick does
# what was left (a distributed tick's parts are retried by their tick, flows/fanout.py).
stop_one() {
  local pidfile=$1 pid
  pid=$(cat "$pidfile")
  if running "$pidfile"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" || true
    for _ in $(seq 1 $((STOP_TIMEOUT * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$(basename "$pidfile" .pid) did not stop within ${STOP_TIMEOUT}s: killed"
    fi
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  log "stopped $(basename "$pidfile" .pid)"
}

migrate() { "$BIN/kiemdiem" db upgrade; }

deploy() {
  "$BIN/prefect" work-pool create "$POOL" --type process --overwrite >/dev/null
  "$BIN/prefect" --no-prompt deploy --all
}

# One process in the foreground, as systemd runs it (and `start`, in the background).
cmd_run() {
  case "${1:-}" in
    prefect-server) exec "$BIN/prefect" server start --host "$PREFECT_SERVER_HOST" --port "$PREFECT_PORT" ;;
    worker) wait_for_api; exec "$BIN/prefect" worker start --pool "$POOL" --name "$(hostname)-worker-${2:-1}" ;;
    web) exec "$BIN/uvicorn" --factory kiemdiem.web.app:create_app --host "$KIEMDIEM_WEB_HOST" --port "$KIEMDIEM_WEB_PORT" --workers "$KIEMDIEM_WEB_WORKERS" ;;
    *) echo "usage: scripts/production.sh run prefect-server|worker N|web" >&2; exit 2 ;;
  esac
}

# Prefect's server reads PREFECT_DATABASE_URL with its async driver only, and the script's backup and
# restore use psql on it: a postgresql+asyncpg:// address. Another form made the server exit at
# start with a traceback in its log, or made psql fail. Said before anything is done.
check_prefect_database_url() {
  local url=$PREFECT_DATABASE_URL scheme rest
  scheme=${url%%://*}; rest=${url#*://}
  [ "$scheme" = postgresql+asyncpg ] && [ "$rest" != "$url" ] && return 0
  case "$scheme" in
    postgres|postgresql|postgresql+psycopg|postgresql+psycopg2)
      log "PREFECT_DATABASE_URL=$(masked "$url"): Prefect's server needs the asyncpg driver: write postgresql+asyncpg://$(masked "$rest"); $1" >&2 ;;
    sqlite*)
      log "PREFECT_DATABASE_URL=$(masked "$url"): production keeps Prefect's database on PostgreSQL (backups and restores use pg_dump): write postgresql+asyncpg://USER@HOST:5432/prefect; $1" >&2 ;;
    *)
      log "PREFECT_DATABASE_URL=$(masked "$url"): not a PostgreSQL address for Prefect: write postgresql+asyncpg://USER@HOST:5432/prefect; $1" >&2 ;;
  esac
  exit 2
}

check_backup_keep() {  # a positive whole number, or exit 2 before anything is done
  if ! [[ "$KIEMDIEM_BACKUP_KEEP" =~ ^[1-9][0-9]*$ ]]; then
    log "KIEMDIEM_BACKUP_KEEP='$KIEMDIEM_BACKUP_KEEP': give how many backups to keep as a whole number of at least 1, e.g. 14; $1" >&2
    exit 2
  fi
}

under_systemd() { command -v systemctl >/dev/null && systemctl is-enabled --quiet kiemdiem.target 2>/dev/null; }

worker_units() { for i in $(seq 1 "$KIEMDIEM_WORKERS"); do printf 'kiemdiem-worker@%s.service ' "$i"; done; }

# Units in $KIEMDIEM_HOME/systemd and the configuration in $ENV_FILE (the service user's only: it
# names the databases and the mail account). `workers`: a machine that runs workers only.
cmd_systemd() {
  local dir="$KIEMDIEM_HOME/systemd" user="${KIEMDIEM_USER:-$(id -un)}" wants name value
  if ! [[ "$KIEMDIEM_BACKUP_AT" =~ ^([01][0-9]|2[0-3]):[0-5][0-9]$ ]]; then
    log "KIEMDIEM_BACKUP_AT='$KIEMDIEM_BACKUP_AT': give the nightly backup's time as HH:MM (Vietnam time), e.g. 02:30; nothing written" >&2
    exit 2
  fi
  check_backup_keep "nothing written"
  mkdir -p "$dir"
  {
    echo "# kiemdiem's configuration, written by scripts/production.sh systemd on $(date -u +%FT%TZ)"
    [ "${1:-}" = workers ] && echo "KIEMDIEM_ROLE='workers'"
    while IFS= read -r name; do
      [ -n "$name" ] && [ "$name" != KIEMDIEM_ROLE ] || continue
      value=${!name}
      case "$value" in
        *"'"*|*$'\n'*) log "$name: a value with a quote (') or a line break cannot be saved in $ENV_FILE; nothing written" >&2
                        rm -f "$ENV_FILE.new"; exit 2 ;;
      esac
      printf "%s='%s'\n" "$name" "$value"
    done <<<"$GIVEN"
  } >"$ENV_FILE.new"
  mv -f "$ENV_FILE.new" "$ENV_FILE"
  unit() {  # unit NAME DESCRIPTION AFTER EXEC RESTART
    cat >"$dir/$1" <<UNIT
[Unit]
Description=$2
After=$3
Wants=network-online.target
PartOf=kiemdiem.target

[Service]
Type=exec
User=$user
EnvironmentFile=$ENV_FILE
WorkingDirectory=$REPO
ExecStart="$SCRIPT" $4
Restart=$5
RestartSec=5
TimeoutStopSec=30
UNIT
  }
  unit kiemdiem-worker@.service "kiemdiem: Prefect worker %i" "network-online.target kiemdiem-prefect-server.service" "run worker %i" always
  wants=$(worker_units)
  if [ "${1:-}" != workers ]; then
    unit kiemdiem-prefect-server.service "kiemdiem: Prefect server" "network-online.target postgresql.service" "run prefect-server" on-failure
    unit kiemdiem-web.service "kiemdiem: dashboard" "network-online.target postgresql.service" "run web" on-failure
    cat >"$dir/kiemdiem-backup.service" <<UNIT
[Unit]
Description=kiemdiem: nightly backup (pg_dump of both databases, new submitted files)

[Service]
Type=oneshot
User=$user
EnvironmentFile=$ENV_FILE
WorkingDirectory=$REPO
ExecStart="$SCRIPT" backup
UNIT
    cat >"$dir/kiemdiem-backup.timer" <<UNIT
[Unit]
Description=kiemdiem: nightly backup at $KIEMDIEM_BACKUP_AT (Vietnam time)
PartOf=kiemdiem.target

[Timer]
OnCalendar=*-*-* $KIEMDIEM_BACKUP_AT:00 Asia/Ho_Chi_Minh
Persistent=true
UNIT
    wants="kiemdiem-prefect-server.service kiemdiem-web.service $wants kiemdiem-backup.timer"
  else
    rm -f "$dir/kiemdiem-prefect-server.service" "$dir/kiemdiem-web.service" "$dir/kiemdiem-backup.service" "$dir/kiemdiem-backup.timer"
  fi
  cat >"$dir/kiemdiem.target" <<UNIT
[Unit]
Description=kiemdiem
Wants=$wants

[Install]
WantedBy=multi-user.target
UNIT
  chmod 644 "$dir"/kiemdiem*  # no secret in them: that is kiemdiem.env
  log "units written to $dir, configuration to $ENV_FILE; to install them (as root):"
  echo "  cp $dir/kiemdiem* /etc/systemd/system/ && systemctl daemon-reload && systemctl enable --now kiemdiem.target"
  echo "then: scripts/production.sh status; logs: journalctl -u 'kiemdiem*'"
}

# The hourly tick's deployment carries KIEMDIEM_CAMPAIGN (prefect.yaml): empty, every tick would fail.
check_campaign_given() {
  if [ -z "$KIEMDIEM_CAMPAIGN" ]; then
    log "KIEMDIEM_CAMPAIGN is empty: give the id of the campaign the hourly tick runs (the --id of 'kiemdiem campaign create'), e.g. export KIEMDIEM_CAMPAIGN=sct2023; $1" >&2
    exit 2
  fi
}

# A campaign id the database does not hold: said, with those it holds, not refused: the first setup
# comes before any campaign is created, and a new year's campaign may be created after its setup.
warn_unknown_campaign() {
  local ids
  # The ids one a line (`kiemdiem campaign list` is for people: its lines are wrapped to the terminal).
  ids=$("$BIN/python" -c 'from kiemdiem.store.db import open_store
from kiemdiem.store.organization import list_campaigns
store = open_store()
with store.uow() as uow:
    print("\n".join(campaign.id for campaign in list_campaigns(uow)))
store.dispose()') || return 0  # its error was printed; setup goes on as before this check
  if [ -z "$ids" ]; then
    log "no campaign yet: create '$KIEMDIEM_CAMPAIGN' next (scripts/production.sh kiemdiem campaign create PLAN.yaml --id $KIEMDIEM_CAMPAIGN); until then the hourly tick fails"
  elif ! grep -qxF -- "$KIEMDIEM_CAMPAIGN" <<<"$ids"; then
    log "WARNING: KIEMDIEM_CAMPAIGN='$KIEMDIEM_CAMPAIGN' is not a campaign of this database, which has: $(paste -sd ' ' <<<"$ids")." >&2
    log "WARNING: the hourly tick fails until it is created (scripts/production.sh kiemdiem campaign create PLAN.yaml --id $KIEMDIEM_CAMPAIGN); if it is a typo, set KIEMDIEM_CAMPAIGN and run setup again" >&2
  fi
}

cmd_setup() {
  check_campaign_given "nothing done"
  check_prefect_database_url "nothing done"
  [ -x "$BIN/kiemdiem" ] || { python3 -m venv "$VENV"; "$BIN/pip" install --quiet --upgrade pip; }
  "$BIN/pip" install --quiet -e "$REPO"
  mkdir -p "$KIEMDIEM_HOME" "$KIEMDIEM_RUN" "$KIEMDIEM_BACKUPS"
  ensure_database KIEMDIEM_DATABASE_URL
  ensure_database PREFECT_DATABASE_URL
  migrate
  warn_unknown_campaign
  spawn prefect-server "$SCRIPT" run prefect-server
  wait_for_api
  deploy
  log "setup done; next: scripts/production.sh start"
}

start_workers() {
  for i in $(seq 1 "$KIEMDIEM_WORKERS"); do
    spawn "worker-$i" "$SCRIPT" run worker "$i"
  done
}

cmd_workers() {  # another machine: workers only, for the server at PREFECT_API_URL
  KIEMDIEM_ROLE=workers
  [ -x "$BIN/kiemdiem" ] || { python3 -m venv "$VENV"; "$BIN/pip" install --quiet --upgrade pip; "$BIN/pip" install --quiet -e "$REPO"; }
  wait_for_api
  start_workers
  for pidfile in "$KIEMDIEM_RUN"/worker-*.pid; do
    running "$pidfile" && echo "up    $(basename "$pidfile" .pid)" || echo "DOWN  $(basename "$pidfile" .pid)"
  done
}

cmd_start() {
  if under_systemd; then
    systemctl start kiemdiem.target
  elif [ "$KIEMDIEM_ROLE" = workers ]; then
    cmd_workers
  else
    spawn prefect-server "$SCRIPT" run prefect-server
    wait_for_api
    start_workers
    spawn web "$SCRIPT" run web
  fi
  if [ "$KIEMDIEM_ROLE" != workers ]; then
    for _ in $(seq 1 60); do
      curl -fsS "http://$KIEMDIEM_WEB_HOST:$KIEMDIEM_WEB_PORT/healthz" >/dev/null 2>&1 && break
      # A dashboard that exited (a port taken, a wrong database) will not answer: say why now.
      if [ -f "$KIEMDIEM_RUN/web.pid" ] && ! running "$KIEMDIEM_RUN/web.pid"; then
        log "the dashboard exited; see $KIEMDIEM_RUN/web.log:"; tail -n 5 "$KIEMDIEM_RUN/web.log" >&2 || true
        break
      fi
      sleep 1
    done
  fi
  cmd_status
}

cmd_status() {
  local ok=0 unit units
  if under_systemd; then
    units="$(worker_units)"
    [ "$KIEMDIEM_ROLE" = workers ] || units="kiemdiem-prefect-server.service kiemdiem-web.service $units kiemdiem-backup.timer"
    for unit in $units; do
      systemctl is-active --quiet "$unit" && echo "up    $unit" || { echo "DOWN  $unit"; ok=1; }
    done
  fi
  for pidfile in "$KIEMDIEM_RUN"/*.pid; do
    [ -e "$pidfile" ] || continue
    if running "$pidfile"; then echo "up    $(basename "$pidfile" .pid)"; else echo "DOWN  $(basename "$pidfile" .pid)"; ok=1; fi
  done
  curl -fs "$PREFECT_API_URL/health" >/dev/null 2>&1 && echo "prefect api: $PREFECT_API_URL" || { echo "prefect api: DOWN"; ok=1; }
  [ "$KIEMDIEM_ROLE" = workers ] && return $ok  # no dashboard on a workers-only machine
  curl -fs "http://$KIEMDIEM_WEB_HOST:$KIEMDIEM_WEB_PORT/healthz" >/dev/null 2>&1 && echo "dashboard: http://$KIEMDIEM_WEB_HOST:$KIEMDIEM_WEB_PORT" || { echo "dashboard: DOWN"; ok=1; }
  return $ok
}

cmd_stop() {
  if under_systemd; then
    systemctl stop kiemdiem.target
    log "stopped kiemdiem.target"
  fi
  for pidfile in "$KIEMDIEM_RUN"/web.pid "$KIEMDIEM_RUN"/worker-*.pid "$KIEMDIEM_RUN"/prefect-server.pid; do
    [ -e "$pidfile" ] && stop_one "$pidfile"
  done
  return 0
}

kiemdiem_dsn() { echo "${KIEMDIEM_DATABASE_URL/postgresql+psycopg:/postgresql:}"; }
prefect_dsn() { admin_url "$PREFECT_DATABASE_URL" | sed "s#/postgres\$#/$(database_name "$PREFECT_DATABASE_URL")#"; }

# A backup's folder is named by its time (UTC), written under NAME.partial and renamed when complete:
# a failed backup never takes that name, so it is neither offered as complete nor counted below.
BACKUP_NAME='^[0-9]{8}T[0-9]{6}Z$'

cmd_backup() {
  local stamp target
  check_backup_keep "no backup taken"
  check_prefect_database_url "no backup taken"
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  target="$KIEMDIEM_BACKUPS/$stamp"
  backup_failed() { log "backup failed ($1); $target.partial is left as it is and no backup was removed" >&2; exit 1; }
  mkdir -p "$target.partial"
  pg_dump --format=custom --file "$target.partial/kiemdiem.dump" "$(kiemdiem_dsn)" || backup_failed "pg_dump of kiemdiem's database"
  pg_dump --format=custom --file "$target.partial/prefect.dump" "$(prefect_dsn)" || backup_failed "pg_dump of Prefect's database"
  # Submitted files live outside the database, content-addressed: copy new ones only.
  if [ -d "$KIEMDIEM_HOME/blobs" ]; then
    copy_new "$KIEMDIEM_HOME/blobs" "$KIEMDIEM_BACKUPS/blobs" || backup_failed "copy of the submitted files"
  fi
  # The dashboard's session key: without it every user must sign in again after a restore.
  if [ -f "$KIEMDIEM_HOME/web-secret.key" ]; then
    cp -a "$KIEMDIEM_HOME/web-secret.key" "$target.partial/"
  fi
  rm -rf "$target"  # a backup of the same second (two runs at once): this one replaces it
  mv "$target.partial" "$target"
  log "backup written to $target; the submitted files are in $KIEMDIEM_BACKUPS/blobs (shared by every backup)"
  log "restore: scripts/production.sh restore $stamp"
  prune_backups
}

# Only after a backup succeeded (the script stops at the first failed step, before this): the
# newest KIEMDIEM_BACKUP_KEEP backups stay, older ones go. A backup is a folder named by its time
# (BACKUP_NAME) holding kiemdiem.dump; anything else (blobs, the shared submitted files, a .partial
# folder, a folder of one's own) is never touched. The submitted files are never pruned: a file
# kept by an old database may be needed by a newer one.
prune_backups() {
  local backups=() dir name
  for dir in "$KIEMDIEM_BACKUPS"/*/; do
    dir=${dir%/}; name=${dir##*/}
    if [[ $name =~ $BACKUP_NAME ]] && [ ! -L "$dir" ] && [ -f "$dir/kiemdiem.dump" ]; then backups+=("$name"); fi
  done
  # The glob sorts by name, and the names are times of one width: oldest first.
  local excess=$(( ${#backups[@]} - KIEMDIEM_BACKUP_KEEP ))
  for name in "${backups[@]:0:$(( excess > 0 ? excess : 0 ))}"; do
    rm -rf -- "${KIEMDIEM_BACKUPS:?}/$name"
    log "removed old backup $name (KIEMDIEM_BACKUP_KEEP=$KIEMDIEM_BACKUP_KEEP)"
  done
}

# The backups a restore can take, newest first (complete: named by their time, both dumps); a
# backup that did not finish (.partial) is named apart, never offered as one.
list_backups() {
  local names=() dir name i found=0
  for dir in "$KIEMDIEM_BACKUPS"/*/; do names+=("$(basename "$dir")"); done
  for (( i=${#names[@]}-1; i>=0; i-- )); do  # the glob sorts by name, and the names are times: newest last
    name=${names[i]}
    if [[ $name =~ $BACKUP_NAME ]] && [ -f "$KIEMDIEM_BACKUPS/$name/kiemdiem.dump" ] && [ -f "$KIEMDIEM_BACKUPS/$name/prefect.dump" ]; then
      echo "  $name"; found=1
    fi
  done
  [ "$found" = 1 ] || echo "  (none)"
  for (( i=${#names[@]}-1; i>=0; i-- )); do
    [[ ${names[i]} == *.partial ]] && echo "  (${names[i]}: did not finish, not restorable)"
  done
  return 0
}

cmd_restore() {
  local stamp=${1:-} source
  check_prefect_database_url "nothing restored"
  if [ -z "$stamp" ]; then
    echo "usage: scripts/production.sh restore <backup>; backups in $KIEMDIEM_BACKUPS (newest first):" >&2
    list_backups >&2
    exit 2
  fi
  source="$KIEMDIEM_BACKUPS/$stamp"
  if [[ $stamp == *.partial ]]; then
    log "$source is a backup that did not finish (its step failed or was cut off): it is not restored; choose a complete one (scripts/production.sh restore)"; exit 2
  fi
  if [ ! -f "$source/kiemdiem.dump" ] || [ ! -f "$source/prefect.dump" ]; then
    log "no backup at $source (it needs kiemdiem.dump and prefect.dump)"; exit 2
  fi
  # Stopped first: nothing writes while the databases are replaced.
  cmd_stop
  # Each database made anew, then the dump restored in one transaction: tables a later migration
  # added (a backup taken before an upgrade) do not survive. A failed restore stops here with the
  # database empty (the script exits non-zero): run it again once the cause is mended.
  recreate_database "$KIEMDIEM_DATABASE_URL"
  pg_restore --no-owner --exit-on-error --single-transaction --dbname="$(kiemdiem_dsn)" "$source/kiemdiem.dump"
  recreate_database "$PREFECT_DATABASE_URL"
  pg_restore --no-owner --exit-on-error --single-transaction --dbname="$(prefect_dsn)" "$source/prefect.dump"
  # Files are content-addressed: copying back never overwrites one, and files newer than the
  # backup stay (no row refers to them any more).
  if [ -d "$KIEMDIEM_BACKUPS/blobs" ]; then
    copy_new "$KIEMDIEM_BACKUPS/blobs" "$KIEMDIEM_HOME/blobs"
  fi
  if [ -f "$source/web-secret.key" ]; then
    cp -a "$source/web-secret.key" "$KIEMDIEM_HOME/"
  fi
  migrate
  log "restored $stamp; next: scripts/production.sh start"
}

cmd_upgrade() {
  # Refused before anything stops: the redeploy needs the campaign, the backup its count.
  check_campaign_given "nothing done"
  check_backup_keep "nothing done"
  # Stopped first: no worker runs the old code on the new schema, and the backup is of a quiet database.
  cmd_stop
  cmd_backup
  "$BIN/pip" install --quiet -e "$REPO"
  migrate
  warn_unknown_campaign
  cmd_start
  deploy
}

case "${1:-}" in
  setup) cmd_setup ;;
  start) cmd_start ;;
  workers) cmd_workers ;;
  status) cmd_status ;;
  stop) cmd_stop ;;
  backup) cmd_backup ;;
  restore) cmd_restore "${2:-}" ;;
  upgrade) cmd_upgrade ;;
  systemd) cmd_systemd "${2:-}" ;;
  run) shift; cmd_run "$@" ;;
  kiemdiem) shift; exec "$BIN/kiemdiem" "$@" ;;
  *) sed -n '2,19p' "$SCRIPT"; exit 2 ;;
esac
