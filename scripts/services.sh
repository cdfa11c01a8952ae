#!/usr/bin/env bash
# Local throw-away backing services for postroom tests and demos: Kafka (KRaft, single node),
# Redis and PostgreSQL 15, all on 127.0.0.1, all state under <repo>/.services/<name>/.
#
# Usage: scripts/services.sh start|stop|restart|status|kill|pid [kafka|redis|postgres ...]
#        scripts/services.sh env          # export lines for eval "$(scripts/services.sh env)"
#   start    start what is not running (idempotent), wait until each answers, print URLs
#   stop     clean stop (SIGTERM / pg_ctl -m fast, wait, SIGKILL after a timeout); no-op if stopped
#   restart  stop + start
#   status   one line per service: running/stopped, port, pid (exit 0 always)
#   kill     SIGKILL (crash simulation for fault tests); no-op if stopped
#   pid      print the pid of each named running service (exit 1 if one is not running)
# Default service list: kafka redis postgres.
#
# Env (defaults in brackets):
#   POSTROOM_KAFKA_PORT [19092]  POSTROOM_KAFKA_CONTROLLER_PORT [19093]
#   POSTROOM_REDIS_PORT [16379]  POSTROOM_PG_PORT [15432]
#   KAFKA_VERSION [see fetch-kafka.sh]   POSTROOM_KAFKA_HEAP [-Xmx512m -Xms256m]
#   POSTROOM_KAFKA_START_TIMEOUT [90]  POSTROOM_REDIS_START_TIMEOUT [30]
#   POSTROOM_PG_START_TIMEOUT [30]     POSTROOM_STOP_TIMEOUT [30]
#   POSTROOM_PG_BIN [/usr/lib/postgresql/15/bin]  JAVA [java]  PYTHON [python3]
#
# PostgreSQL refuses to run as root; as root the cluster is owned by and run as the `postgres`
# system user. If that user cannot reach <repo>/.services (e.g. the repo lives under /root), the
# cluster goes to ${TMPDIR:-/tmp}/postroom-services-<uid>-<hash of repo path>/postgres instead;
# .services/postgres/location records where, and .services/postgres/postgres.log links to its log.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
here="$repo/scripts"
svc_root="$repo/.services"

DEFAULT_KAFKA_VERSION="4.4.0"   # keep in sync with scripts/fetch-kafka.sh
KAFKA_VERSION="${KAFKA_VERSION:-$DEFAULT_KAFKA_VERSION}"
KAFKA_PORT="${POSTROOM_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${POSTROOM_KAFKA_CONTROLLER_PORT:-19093}"
REDIS_PORT="${POSTROOM_REDIS_PORT:-16379}"
PG_PORT="${POSTROOM_PG_PORT:-15432}"
KAFKA_HEAP="${POSTROOM_KAFKA_HEAP:--Xmx512m -Xms256m}"
KAFKA_START_TIMEOUT="${POSTROOM_KAFKA_START_TIMEOUT:-90}"
REDIS_START_TIMEOUT="${POSTROOM_REDIS_START_TIMEOUT:-30}"
PG_START_TIMEOUT="${POSTROOM_PG_START_TIMEOUT:-30}"
STOP_TIMEOUT="${POSTROOM_STOP_TIMEOUT:-30}"
PG_BIN="${POSTROOM_PG_BIN:-/usr/lib/postgresql/15/bin}"
JAVA="${JAVA:-java}"
PYTHON="${PYTHON:-python3}"
HOST="127.0.0.1"
ALL_SERVICES=(kafka redis postgres)

log() { printf '[services] %s\n' "$*"; }
warn() { printf '[services] WARNING: %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

ensure_gitignore() {
  local gi="$repo/.gitignore" entry
  touch "$gi"
  for entry in "/.cache/" "/.services/"; do
    if ! grep -qxF "$entry" "$gi"; then
      if [ -s "$gi" ] && [ "$(tail -c1 "$gi" | od -An -c | tr -d ' ')" != '\n' ]; then echo >>"$gi"; fi
      echo "$entry" >>"$gi"
    fi
  done
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command as the postgres OS user when we are root, else as ourselves. cd / first so the
# postgres user never trips over an unreadable current directory (e.g. under /root).
as_pg() {
  if is_root; then (cd / && runuser -u postgres -- "$@"); else (cd / && "$@"); fi
}

# pid exists and is not a zombie (a dead child whose parent - maybe PID 1 in a container - has
# not reaped it yet still answers kill -0)
alive() {
  local st
  kill -0 "$1" 2>/dev/null || return 1
  st="$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null || true)"
  [ "$st" != "Z" ]
}

# pid alive and its command line contains $2
pid_matches() {
  local pid="$1" pat="$2" cmd
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmd" == *"$pat"* ]]
}

# wait up to $2 seconds for pid $1 to disappear
wait_gone() {
  local pid="$1" t="$2" i
  for ((i = 0; i < t * 10; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  ! alive "$pid"
}

# SIGTERM, wait, SIGKILL. $1 = name, $2 = pid
term_then_kill() {
  local name="$1" pid="$2"
  kill -TERM "$pid" 2>/dev/null || return 0
  if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
    warn "$name (pid $pid) did not exit within ${STOP_TIMEOUT}s after SIGTERM - sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "$name (pid $pid) survived SIGKILL"
  fi
}

# byte size of a log file, to show only what this start appended
log_size() { stat -c %s "$1" 2>/dev/null || echo 0; }
declare -A LOG_START=()

print_failure() { # $1 service, $2 what, $3 command, $4 log file
  local from=$(( ${LOG_START[$1]:-0} + 1 ))
  {
    printf '[services] ERROR: %s %s\n' "$1" "$2"
    printf '[services]   readiness command: %s\n' "$3"
    printf '[services]   log file: %s\n' "$4"
    if [ -f "$4" ]; then
      # the real cause is often further up than the shutdown noise at the end
      local errs
      errs="$(tail -c +"$from" "$4" | tail -n 3000 | grep -E ' (ERROR|FATAL|PANIC)[: ]|^Caused by|# (Warning|Failed)' | tail -n 6 | cut -c1-400 || true)"
      if [ -n "$errs" ]; then
        printf '[services]   ---- last error lines of this start in %s ----\n' "$4"
        printf '%s\n' "$errs" | sed 's/^/    /'
      fi
      printf '[services]   ---- last 30 lines of %s ----\n' "$4"
      tail -n 30 "$4" | sed 's/^/    /'
      printf '[services]   ---- end of log ----\n'
    else
      printf '[services]   (log file does not exist)\n'
    fi
  } >&2
}

# ------------------------------------------------------------------------------------------ kafka
kafka_dir="$svc_root/kafka"
kafka_data="$kafka_dir/data"
kafka_pidfile="$kafka_dir/kafka.pid"
kafka_log="$kafka_dir/kafka.log"
kafka_stdout="$kafka_dir/kafka.stdout.log"   # JVM-level output (crashes, OOM) only
kafka_libs="$repo/.cache/kafka/$KAFKA_VERSION/libs"

kafka_pid() {
  local pid
  pid="$(cat "$kafka_pidfile" 2>/dev/null || true)"
  pid_matches "$pid" "kafka.Kafka" && echo "$pid"
}

kafka_ready_cmd() {
  # printed in error messages and eval'ed; the python code has no $, ` or " so "..." is safe
  if "$PYTHON" -c 'import confluent_kafka' >/dev/null 2>&1; then
    printf 'timeout 20 %s -c "%s" %s' "$PYTHON" "from confluent_kafka.admin import AdminClient; import sys; md = AdminClient({'bootstrap.servers': sys.argv[1], 'socket.connection.setup.timeout.ms': 3000, 'log_level': 0}).list_topics(timeout=5); sys.exit(0 if md.brokers else 1)" "$HOST:$KAFKA_PORT"
  else
    printf "timeout 30 %s -cp '%s' org.apache.kafka.tools.TopicCommand --bootstrap-server %s --list" "$JAVA" "$kafka_libs/*" "$HOST:$KAFKA_PORT"
  fi
}

kafka_write_config() {
  cat >"$kafka_dir/server.properties" <<EOF
# generated by scripts/services.sh on every start - edit the script, not this file
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$kafka_data
auto.create.topics.enable=false
num.partitions=3
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a SIGKILL the restarted broker cannot re-register until the old registration's session
# expires (DUPLICATE_BROKER_REGISTRATION); defaults 9000/2000 make crash-restart take ~10 s.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
EOF
  if ls "$kafka_libs"/log4j-core-*.jar >/dev/null 2>&1; then
    cat >"$kafka_dir/log4j2.properties" <<EOF
# generated by scripts/services.sh - Kafka broker logging (log4j2) to $kafka_log
status = warn
name = postroom-kafka
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $kafka_log
appender.file.filePattern = $kafka_log.%i
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
  else # Kafka 3.x: log4j 1.x API (reload4j)
    cat >"$kafka_dir/log4j.properties" <<EOF
# generated by scripts/services.sh - Kafka broker logging (reload4j) to $kafka_log
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$kafka_log
log4j.appender.file.Append=true
log4j.appender.file.MaxFileSize=50MB
log4j.appender.file.MaxBackupIndex=3
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
EOF
  fi
}

kafka_log_opts() {
  if [ -f "$kafka_dir/log4j2.properties" ] && ls "$kafka_libs"/log4j-core-*.jar >/dev/null 2>&1; then
    echo "-Dlog4j2.configurationFile=$kafka_dir/log4j2.properties"
  else
    echo "-Dlog4j.configuration=file:$kafka_dir/log4j.properties"
  fi
}

kafka_launch() {
  local pid
  if pid="$(kafka_pid)"; then log "kafka: already running (pid $pid)"; return 0; fi
  rm -f "$kafka_pidfile"
  # (this runs in an `||` context, where set -e is off: check explicitly)
  command -v "$JAVA" >/dev/null 2>&1 || die "kafka: java not found (apt-get install openjdk-17-jre-headless)"
  local jv jmin=17
  case "$KAFKA_VERSION" in 3.*) jmin=11 ;; esac
  jv="$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  if [ -n "$jv" ] && [ "${jv%%.*}" -lt "$jmin" ] 2>/dev/null; then
    die "kafka: $JAVA is Java $jv; Kafka $KAFKA_VERSION needs Java $jmin+ (set JAVA=/path/to/java)"
  fi
  KAFKA_VERSION="$KAFKA_VERSION" "$here/fetch-kafka.sh" || die "kafka: scripts/fetch-kafka.sh failed for Kafka $KAFKA_VERSION"
  mkdir -p "$kafka_dir" "$kafka_data" || die "kafka: cannot create $kafka_data"
  kafka_write_config || die "kafka: cannot write config in $kafka_dir"
  local cp="$kafka_libs/*" logopt
  logopt="$(kafka_log_opts)"
  if [ ! -f "$kafka_data/meta.properties" ]; then
    local cid
    cid="$(cat "$kafka_dir/cluster.id" 2>/dev/null || true)"
    if [ -z "$cid" ]; then
      cid="$("$JAVA" "$logopt" -cp "$cp" kafka.tools.StorageTool random-uuid 2>>"$kafka_dir/format.log" | tail -n1)"
      [ -n "$cid" ] || die "kafka: could not generate a cluster id (see $kafka_dir/format.log)"
      echo "$cid" >"$kafka_dir/cluster.id"
    fi
    log "kafka: formatting storage $kafka_data (cluster id $cid, Kafka $KAFKA_VERSION, --standalone)"
    if ! "$JAVA" "$logopt" -cp "$cp" kafka.tools.StorageTool format --config "$kafka_dir/server.properties" \
         --cluster-id "$cid" --standalone >>"$kafka_dir/format.log" 2>&1; then
      tail -n 30 "$kafka_dir/format.log" >&2
      die "kafka: storage format failed (java -cp '$cp' kafka.tools.StorageTool format --config $kafka_dir/server.properties --cluster-id $cid --standalone); output in $kafka_dir/format.log"
    fi
  fi
  LOG_START[kafka]="$(log_size "$kafka_log")"
  log "kafka: starting Kafka $KAFKA_VERSION on $HOST:$KAFKA_PORT (controller $HOST:$KAFKA_CONTROLLER_PORT), log $kafka_log"
  # setsid: own session, so the broker survives the calling shell / job control group.
  # The child writes its own pid and then execs java, so the pid file is the JVM's pid.
  # shellcheck disable=SC2086,SC2016  # KAFKA_HEAP is intentionally word-split; $$ is for the child
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$kafka_pidfile" \
    "$JAVA" $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    "$logopt" -cp "$cp" kafka.Kafka "$kafka_dir/server.properties" \
    </dev/null >>"$kafka_stdout" 2>&1 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do [ -s "$kafka_pidfile" ] && break; sleep 0.1; done
}

kafka_wait() {
  local cmd deadline pid
  cmd="$(kafka_ready_cmd)"
  deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  while :; do
    if eval "$cmd" >/dev/null 2>&1 && pid="$(kafka_pid)"; then
      log "kafka: ready (pid $pid, metadata request ok)"
      return 0
    fi
    if ! pid="$(kafka_pid)"; then
      print_failure kafka "process exited before answering a metadata request (see also $kafka_stdout)" "$cmd" "$kafka_log"
      if [ -s "$kafka_stdout" ]; then
        { echo "[services]   ---- last 15 lines of $kafka_stdout (JVM output) ----"; tail -n 15 "$kafka_stdout" | sed 's/^/    /'; } >&2
      fi
      return 1
    fi
    if ((SECONDS >= deadline)); then
      print_failure kafka "did not answer a metadata request within ${KAFKA_START_TIMEOUT}s (stopping it)" "$cmd" "$kafka_log"
      [ -n "${KAFKA_STARTED_BY_US:-}" ] && term_then_kill kafka "$pid"
      return 1
    fi
    sleep 1
  done
}

kafka_stop() {
  local pid
  if ! pid="$(kafka_pid)"; then log "kafka: not running"; rm -f "$kafka_pidfile"; return 0; fi
  log "kafka: stopping (pid $pid, SIGTERM, SIGKILL after ${STOP_TIMEOUT}s)"
  term_then_kill kafka "$pid"
  rm -f "$kafka_pidfile"
  log "kafka: stopped"
}

kafka_kill() {
  local pid
  if ! pid="$(kafka_pid)"; then log "kafka: not running"; return 0; fi
  kill -KILL "$pid"; wait_gone "$pid" 10 || true
  log "kafka: killed (SIGKILL pid $pid)"
}

# ------------------------------------------------------------------------------------------ redis
redis_dir="$svc_root/redis"
redis_pidfile="$redis_dir/redis.pid"
redis_log="$redis_dir/redis.log"

redis_pid() {
  local pid
  pid="$(cat "$redis_pidfile" 2>/dev/null || true)"
  pid_matches "$pid" "redis-server" && echo "$pid"
}

redis_launch() {
  local pid
  if pid="$(redis_pid)"; then log "redis: already running (pid $pid)"; return 0; fi
  rm -f "$redis_pidfile"
  command -v redis-server >/dev/null 2>&1 || die "redis: redis-server not found (apt-get install redis-server)"
  mkdir -p "$redis_dir"
  cat >"$redis_dir/redis.conf" <<EOF
# generated by scripts/services.sh on every start
bind $HOST
port $REDIS_PORT
protected-mode yes
daemonize yes
supervised no
dir $redis_dir
pidfile $redis_pidfile
logfile $redis_log
appendonly yes
appendfsync always
appendfilename appendonly.aof
dbfilename dump.rdb
EOF
  LOG_START[redis]="$(log_size "$redis_log")"
  log "redis: starting on $HOST:$REDIS_PORT, log $redis_log"
  if ! (cd "$redis_dir" && redis-server "$redis_dir/redis.conf" </dev/null >>"$redis_log" 2>&1 9>&-); then
    print_failure redis "failed to launch (redis-server $redis_dir/redis.conf)" "redis-server $redis_dir/redis.conf" "$redis_log"
    return 1
  fi
}

redis_wait() {
  # timeout: redis-cli waits forever if something else accepted the connection but never answers
  local cmd="timeout 5 redis-cli -h $HOST -p $REDIS_PORT ping" deadline t0=$SECONDS
  deadline=$((SECONDS + REDIS_START_TIMEOUT))
  while :; do
    if [ "$($cmd 2>/dev/null || true)" = "PONG" ] && redis_pid >/dev/null; then
      log "redis: ready (pid $(redis_pid), PONG)"
      return 0
    fi
    # daemonized: the pid file appears right after the fork; give it a moment, then insist on it
    if ((SECONDS >= t0 + 3)) && ! redis_pid >/dev/null; then
      print_failure redis "process exited (or never wrote $redis_pidfile) before answering PING" "$cmd" "$redis_log"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      print_failure redis "did not answer PING within ${REDIS_START_TIMEOUT}s" "$cmd" "$redis_log"
      return 1
    fi
    sleep 0.2
  done
}

redis_stop() {
  local pid
  if ! pid="$(redis_pid)"; then log "redis: not running"; rm -f "$redis_pidfile"; return 0; fi
  log "redis: stopping (pid $pid, SIGTERM, SIGKILL after ${STOP_TIMEOUT}s)"
  term_then_kill redis "$pid"
  rm -f "$redis_pidfile"
  log "redis: stopped"
}

redis_kill() {
  local pid
  if ! pid="$(redis_pid)"; then log "redis: not running"; return 0; fi
  kill -KILL "$pid"; wait_gone "$pid" 10 || true
  rm -f "$redis_pidfile"
  log "redis: killed (SIGKILL pid $pid)"
}

# --------------------------------------------------------------------------------------- postgres
pg_link_dir="$svc_root/postgres"   # always exists; the cluster itself may live elsewhere

# Where the cluster lives. Prints the base dir (holding data/, run/, postgres.log).
pg_base() {
  local loc
  if [ -f "$pg_link_dir/location" ]; then
    loc="$(cat "$pg_link_dir/location")"
    if [ -n "$loc" ] && [ -d "$loc" ]; then echo "$loc"; return 0; fi
  fi
  if pg_base_ok "$pg_link_dir"; then echo "$pg_link_dir"; else pg_fallback_base; fi
}

pg_fallback_base() {
  local h
  h="$(printf '%s' "$repo" | sha256sum | cut -c1-12)"
  echo "${TMPDIR:-/tmp}/postroom-services-$(id -u)-$h/postgres"
}

# Can the postgres server process use $1 (given its parent exists)? Only an issue as root.
pg_base_ok() {
  local d="$1" parent
  parent="$(dirname "$d")"
  # the Unix socket path must fit in sun_path (107 bytes); keep some slack
  if [ "$(printf '%s' "$d/run/.s.PGSQL.$PG_PORT" | wc -c)" -gt 100 ]; then return 1; fi
  is_root || return 0
  [ -d "$parent" ] || return 1
  (cd / && runuser -u postgres -- test -x "$parent") 2>/dev/null
}

pg_pid() {
  local base pid
  base="$(pg_base)"
  pid="$(head -n1 "$base/data/postmaster.pid" 2>/dev/null || true)"
  pid_matches "$pid" "postgres" && echo "$pid"
}

pg_ready_cmd() { echo "$PG_BIN/pg_isready -h $HOST -p $PG_PORT -U postgres -d postgres"; }

pg_launch() {
  local pid base data pglog
  [ -x "$PG_BIN/initdb" ] || die "postgres: $PG_BIN/initdb not found (apt-get install postgresql-15, or set POSTROOM_PG_BIN)"
  if is_root; then getent passwd postgres >/dev/null || die "postgres: running as root but there is no 'postgres' system user"; fi
  mkdir -p "$svc_root"
  if pid="$(pg_pid)"; then log "postgres: already running (pid $pid, data $(pg_base)/data)"; return 0; fi
  base="$(pg_base)"
  if [ "$base" != "$pg_link_dir" ]; then
    local parent
    parent="$(dirname "$base")"
    mkdir -p "$pg_link_dir"
    if [ ! -d "$parent" ]; then mkdir -p "$(dirname "$parent")"; mkdir -m 0755 "$parent"; fi
    [ -O "$parent" ] && [ ! -L "$parent" ] || die "postgres: fallback dir $parent exists but is not owned by $(id -un) - refusing to use it"
    chmod 0755 "$parent"
    pg_base_ok "$base" || die "postgres: neither $pg_link_dir nor the fallback $base is usable by the postgres user"
    if [ "$(cat "$pg_link_dir/location" 2>/dev/null || true)" != "$base" ]; then
      echo "$base" >"$pg_link_dir/location"
      log "postgres: the postgres user cannot use $pg_link_dir (not traversable or path too long) - cluster lives in $base"
    fi
  fi
  data="$base/data"; pglog="$base/postgres.log"
  mkdir -p "$base/run"
  if is_root; then chown postgres:postgres "$base" "$base/run"; fi
  chmod 0700 "$base" 2>/dev/null || true
  if [ "$base" != "$pg_link_dir" ]; then
    ln -sfn "$pglog" "$pg_link_dir/postgres.log"
    ln -sfn "$data" "$pg_link_dir/data"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    log "postgres: initdb $data"
    rm -rf "$data"
    if ! as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=trust \
         --encoding=UTF8 --no-locale >>"$base/initdb.log" 2>&1; then
      tail -n 30 "$base/initdb.log" >&2
      die "postgres: initdb failed (log $base/initdb.log)"
    fi
    echo "include_if_exists = 'postroom.conf'" >>"$data/postgresql.conf"
  fi
  cat >"$data/postroom.conf" <<EOF
# generated by scripts/services.sh on every start
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$base/run'
max_connections = 100
fsync = on
logging_collector = off
EOF
  if is_root; then chown postgres:postgres "$data/postroom.conf"; fi
  # A postmaster killed with SIGKILL leaves postmaster.pid behind; postgres itself refuses to start
  # while that pid still exists - which includes an unreaped zombie (seen when PID 1 of a
  # container/VM does not reap promptly). Remove it only when that pid is dead or a zombie.
  if [ -f "$data/postmaster.pid" ]; then
    local old
    old="$(head -n1 "$data/postmaster.pid" 2>/dev/null || true)"
    if ! pid_matches "$old" "postgres"; then
      log "postgres: removing stale postmaster.pid (pid ${old:-?} is gone)"
      rm -f "$data/postmaster.pid"
    fi
  fi
  # same for the socket lock files (the socket dir is private to this cluster)
  local lockf lockpid
  for lockf in "$base/run"/.s.PGSQL.*.lock; do
    [ -e "$lockf" ] || continue
    lockpid="$(head -n1 "$lockf" 2>/dev/null || true)"
    pid_matches "$lockpid" "postgres" || rm -f "$lockf" "${lockf%.lock}"
  done
  LOG_START[postgres]="$(log_size "$pglog")"
  log "postgres: starting on $HOST:$PG_PORT (data $data), log $pglog"
  if ! as_pg setsid "$PG_BIN/pg_ctl" -D "$data" -l "$pglog" -w -t "$PG_START_TIMEOUT" start \
       </dev/null >/dev/null 2>>"$base/pg_ctl.err" 9>&-; then
    print_failure postgres "did not start: pg_ctl start failed or timed out after ${PG_START_TIMEOUT}s (pg_ctl stderr in $base/pg_ctl.err)" \
      "pg_ctl -D $data -l $pglog -w -t $PG_START_TIMEOUT start" "$pglog"
    return 1
  fi
}

pg_wait() {
  local cmd deadline base
  cmd="$(pg_ready_cmd)"
  base="$(pg_base)"
  deadline=$((SECONDS + PG_START_TIMEOUT))
  while :; do
    if $cmd >/dev/null 2>&1 && pg_pid >/dev/null; then break; fi
    if ((SECONDS >= deadline)); then
      print_failure postgres "did not accept connections within ${PG_START_TIMEOUT}s" "$cmd" "$base/postgres.log"
      return 1
    fi
    sleep 0.2
  done
  local exists
  exists="$(as_pg "$PG_BIN/psql" -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -tAc \
            "SELECT 1 FROM pg_database WHERE datname = 'postroom'" 2>/dev/null || true)"
  if [ "$exists" != "1" ]; then
    log "postgres: creating database postroom"
    as_pg "$PG_BIN/createdb" -h "$HOST" -p "$PG_PORT" -U postgres postroom \
      || { print_failure postgres "createdb postroom failed" "createdb -h $HOST -p $PG_PORT -U postgres postroom" "$base/postgres.log"; return 1; }
  fi
  log "postgres: ready (pid $(pg_pid || echo '?'), database postroom)"
}

pg_stop() {
  local pid base
  base="$(pg_base)"
  if ! pid="$(pg_pid)"; then log "postgres: not running"; return 0; fi
  log "postgres: stopping (pid $pid, pg_ctl stop -m fast, SIGKILL after ${STOP_TIMEOUT}s)"
  if ! as_pg "$PG_BIN/pg_ctl" -D "$base/data" -m fast -t "$STOP_TIMEOUT" -w stop >/dev/null 2>&1; then
    warn "postgres: fast shutdown did not finish in ${STOP_TIMEOUT}s - trying immediate, then SIGKILL"
    as_pg "$PG_BIN/pg_ctl" -D "$base/data" -m immediate -t 10 -w stop >/dev/null 2>&1 || pg_kill
  fi
  log "postgres: stopped"
}

pg_kill() {
  local pid kids
  if ! pid="$(pg_pid)"; then log "postgres: not running"; return 0; fi
  # the postmaster and its backends: a whole-server crash
  kids="$(pgrep -P "$pid" 2>/dev/null || true)"
  # shellcheck disable=SC2086
  kill -KILL "$pid" $kids 2>/dev/null || true
  local k
  for k in "$pid" $kids; do wait_gone "$k" 10 || true; done
  log "postgres: killed (SIGKILL postmaster $pid and its children)"
}

# ------------------------------------------------------------------------------------- commands
port_of() { case "$1" in kafka) echo "$KAFKA_PORT" ;; redis) echo "$REDIS_PORT" ;; postgres) echo "$PG_PORT" ;; esac; }
pid_of() { case "$1" in kafka) kafka_pid ;; redis) redis_pid ;; postgres) pg_pid ;; esac; }

url_lines() { # $1 = prefix ("" or "export ")
  echo "${1}POSTROOM_KAFKA_URL=kafka://$HOST:$KAFKA_PORT"
  echo "${1}POSTROOM_REDIS_URL=redis://$HOST:$REDIS_PORT/0"
  echo "${1}POSTROOM_PG_URL=postgresql://postgres@$HOST:$PG_PORT/postroom"
}

with_lock() {
  mkdir -p "$svc_root"
  exec 9>"$svc_root/.lock"
  flock -w 300 9 || die "another scripts/services.sh is running (lock $svc_root/.lock)"
}

cmd_start() {
  local s failed=() launched=()
  local t0=$SECONDS
  # launch everything first (Kafka is slowest), then wait for each
  for s in "$@"; do
    case "$s" in
      kafka) kafka_pid >/dev/null || KAFKA_STARTED_BY_US=1; kafka_launch || failed+=(kafka) ;;
      redis) redis_launch || failed+=(redis) ;;
      postgres) pg_launch || failed+=(postgres) ;;
    esac
    launched+=("$s")
  done
  for s in "${launched[@]}"; do
    [[ " ${failed[*]-} " == *" $s "* ]] && continue
    case "$s" in
      kafka) kafka_wait || failed+=(kafka) ;;
      redis) redis_wait || failed+=(redis) ;;
      postgres) pg_wait || failed+=(postgres) ;;
    esac
  done
  if [ "${#failed[@]}" -gt 0 ]; then
    die "failed to start: ${failed[*]} (see messages above)"
  fi
  log "all up in $((SECONDS - t0)) s: $*"
  url_lines ""
}

cmd_stop() {
  local s
  for s in "$@"; do
    case "$s" in kafka) kafka_stop ;; redis) redis_stop ;; postgres) pg_stop ;; esac
  done
}

cmd_kill() {
  local s
  for s in "$@"; do
    case "$s" in kafka) kafka_kill ;; redis) redis_kill ;; postgres) pg_kill ;; esac
  done
}

cmd_status() {
  local s pid extra
  for s in "$@"; do
    extra=""
    [ "$s" = kafka ] && extra="  version=$KAFKA_VERSION"
    [ "$s" = postgres ] && extra="  data=$(pg_base)/data"
    if pid="$(pid_of "$s")"; then
      printf '%-9s running  port=%-6s pid=%s%s\n' "$s" "$(port_of "$s")" "$pid" "$extra"
    else
      printf '%-9s stopped  port=%-6s pid=-%s\n' "$s" "$(port_of "$s")" "$extra"
    fi
  done
}

cmd_pid() {
  local s pid rc=0
  for s in "$@"; do
    if pid="$(pid_of "$s")"; then
      if [ "$#" -gt 1 ]; then echo "$s $pid"; else echo "$pid"; fi
    else
      echo "$s: not running" >&2; rc=1
    fi
  done
  return "$rc"
}

usage() {
  sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
  local cmd="${1:-}"
  [ "$#" -gt 0 ] && shift
  local services=("$@") s
  [ "${#services[@]}" -gt 0 ] || services=("${ALL_SERVICES[@]}")
  for s in "${services[@]}"; do
    case "$s" in kafka|redis|postgres) ;; *) die "unknown service '$s' (expected: kafka redis postgres)" ;; esac
  done
  case "$cmd" in
    start) ensure_gitignore; with_lock; cmd_start "${services[@]}" ;;
    stop) with_lock; cmd_stop "${services[@]}" ;;
    restart) ensure_gitignore; with_lock; cmd_stop "${services[@]}"; cmd_start "${services[@]}" ;;
    kill) with_lock; cmd_kill "${services[@]}" ;;
    status) cmd_status "${services[@]}" ;;
    pid) cmd_pid "${services[@]}" ;;
    env|urls) url_lines "export " ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
