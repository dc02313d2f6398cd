#!/usr/bin/env bash
# soak.sh — gw under steady load for a long while, with reloads and an upstream server dying
# (issue 12, item 15). Not part of CI.
#
# Three upstream servers (nginx, one process each with 1 worker, `return 200`, so that one can be
# killed alone) behind `gwc serve` (round robin, active health checks, passive ejection, retries
# on connect errors and 502), and wrk sending GETs for SOAK_DURATION seconds. Meanwhile:
#   - every RELOAD_EVERY seconds the configuration is reloaded, alternately by rewriting the file
#     with a change (a route renamed; the watcher reloads it) and by SIGHUP (the same file);
#   - every KILL_EVERY seconds, the first halfway between two reloads, one upstream server in
#     turn is killed with SIGKILL (master and worker) and started again DOWN seconds later;
#   - every SAMPLE_EVERY seconds the gateway's RSS and open file descriptors are read from /proc,
#     and its 5xx answers and retries so far from /metrics (samples.tsv: which event cost what).
# It reports requests, failed requests (wrk: non-2xx/3xx answers and connect, read, write and
# timeout errors), what the gateway counted (/metrics: 5xx answers, retries, reloads and refused
# reloads), reloads made and seen, RSS and file descriptors at the start (after WARMUP seconds of
# load) and at the end, each against the targets: no failed GET, RSS within 10%, descriptors flat
# (at most max(16, 10%) more). Exit status 0 when every target is met, 1 otherwise.
#
# Knobs (environment):
#   SOAK_DURATION=600  seconds of load            RELOAD_EVERY=30   KILL_EVERY=60   DOWN=5
#   CONNS=32           wrk connections            WRK_THREADS=1     WARMUP=30       SAMPLE_EVERY=5
#   GW_THREADS=        `gwc serve --threads` (default: one per core)
#   GWC=target/release/gwc   NO_BUILD=1 uses it as it is (default: `cargo build --release` first)
#   NO_INSTALL=1       never apt-get install nginx or wrk (fail instead)
#   OUT_DIR            where report.md, samples.tsv, events.tsv and the logs go (default: mktemp -d)
#
# Example (a one-minute run to try it): SOAK_DURATION=60 WARMUP=10 bench/soak.sh
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DURATION="${SOAK_DURATION:-600}"
RELOAD_EVERY="${RELOAD_EVERY:-30}"
KILL_EVERY="${KILL_EVERY:-60}"
DOWN="${DOWN:-5}"
CONNS="${CONNS:-32}"
WRK_THREADS="${WRK_THREADS:-1}"
WARMUP="${WARMUP:-30}"
SAMPLE_EVERY="${SAMPLE_EVERY:-5}"
GW_THREADS="${GW_THREADS:-}"
GWC="${GWC:-$ROOT/target/release/gwc}"
OUT_DIR="${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gw-soak.XXXXXX")}"
mkdir -p "$OUT_DIR"
RUN="$(mktemp -d "${TMPDIR:-/tmp}/gw-soak-run.XXXXXX")"

say() { printf '[soak %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
[ "$WARMUP" -lt "$DURATION" ] || die "WARMUP ($WARMUP) must be shorter than SOAK_DURATION ($DURATION)"

# ---------------------------------------------------------------- tools
need() {  # need <binary> <debian package>
  command -v "$1" >/dev/null 2>&1 && return 0
  [ "${NO_INSTALL:-0}" = 1 ] && die "$1 missing (NO_INSTALL=1)"
  say "$1 missing: apt-get install -y $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=120 "$2" >"$OUT_DIR/apt-$2.log" 2>&1 \
    || { apt-get update -q >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >>"$OUT_DIR/apt-$2.log" 2>&1; } \
    || die "could not install $2 (see $OUT_DIR/apt-$2.log)"
  # Debian may start the packaged service; stop it by its pid file, we run our own.
  [ -s /run/nginx.pid ] && kill "$(cat /run/nginx.pid)" 2>/dev/null && say "stopped the packaged nginx"
  return 0
}
need nginx nginx; need wrk wrk; need python3 python3
NGINX="$(command -v nginx)"; WRK="$(command -v wrk)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "${NO_BUILD:-0}" != 1 ]; then
  say "cargo build --release (gwc)"
  (cd "$ROOT" && cargo build --release --bin gwc) >"$OUT_DIR/cargo-build.log" 2>&1 || die "build failed (see $OUT_DIR/cargo-build.log)"
fi
[ -x "$GWC" ] || die "$GWC missing (build it, or unset NO_BUILD)"
GW_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD -- runtime src Cargo.toml 2>/dev/null || echo '+uncommitted')"

# ---------------------------------------------------------------- processes
declare -a STARTED=()   # pids we started, each the leader of its own session (setsid)
is_alive() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; [ "${s%% *}" != Z ]; }
stop_group() {  # stop_group <pid> <signal>
  kill -"$2" -- "-$1" 2>/dev/null || kill -"$2" "$1" 2>/dev/null
}
cleanup() {
  local rc=$? pid
  for pid in "${STARTED[@]}"; do is_alive "$pid" && stop_group "$pid" TERM; done
  sleep 0.5
  for pid in "${STARTED[@]}"; do is_alive "$pid" && stop_group "$pid" KILL; done
  wait 2>/dev/null
  [ "${KEEP_RUN:-0}" = 1 ] || rm -rf "$RUN"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LASTPID=""
start() {  # start <log> <cmd...>: in a session of its own, so the whole group can be signalled
  local log=$1; shift
  setsid "$@" >>"$log" 2>&1 </dev/null &
  LASTPID=$!
  STARTED+=("$LASTPID")
}

free_ports() {  # free_ports <n>: n ports free right now on 127.0.0.1
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
wait_port() {  # wait_port <port> <timeout_s>
  local deadline=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- upstreams
read -r -a PORTS <<<"$(free_ports 5)"
UPS=("${PORTS[0]}" "${PORTS[1]}" "${PORTS[2]}"); GW_PORT="${PORTS[3]}"; ADMIN_PORT="${PORTS[4]}"
mkdir -p "$RUN/tmp"
declare -a UPID=()
upstream_conf() {  # upstream_conf <i>
  local p=${UPS[$1]}
  cat <<EOF
worker_processes 1;
pid $RUN/upstream$1.pid;
error_log $RUN/upstream$1-error.log warn;
events { worker_connections 8000; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $RUN/tmp/u$1_cb; proxy_temp_path $RUN/tmp/u$1_p; fastcgi_temp_path $RUN/tmp/u$1_f;
  uwsgi_temp_path $RUN/tmp/u$1_u; scgi_temp_path $RUN/tmp/u$1_s;
  server { listen 127.0.0.1:$p backlog=4096; location / { default_type text/plain; return 200 "ok$1"; } }
}
EOF
}
start_upstream() {  # start_upstream <i>
  rm -f "$RUN/upstream$1.pid"
  start "$OUT_DIR/upstream$1.log" "$NGINX" -e "$RUN/upstream$1-error.log" -p "$RUN" -c "$RUN/upstream$1.conf" -g 'daemon off;'
  UPID[$1]=$LASTPID
  disown "$LASTPID"   # killed on purpose: no "Killed" line from the shell
  wait_port "${UPS[$1]}" 20 || die "upstream $1 did not start (see $RUN/upstream$1-error.log)"
}
for i in 0 1 2; do upstream_conf "$i" >"$RUN/upstream$i.conf"; start_upstream "$i"; done

# ---------------------------------------------------------------- the gateway
GW_FILE="$RUN/soak.gw"
gw_conf() {  # gw_conf <generation>: the route /soak/gen<N> changes with each reload
  cat <<EOF
listen 127.0.0.1:$GW_PORT
admin 127.0.0.1:$ADMIN_PORT

limits { max_connections 20000 }

upstream app {
  server 127.0.0.1:${UPS[0]}
  server 127.0.0.1:${UPS[1]}
  server 127.0.0.1:${UPS[2]}
  health { path /healthz interval 1s timeout 500ms unhealthy 1 healthy 1 }
  eject { errors 1 for 10s }
  connect_timeout 1s
  timeout 5s
  retry 2 on connect_error, reset, 502
}

route GET /soak/gen$1 { respond 200 "generation $1" }
route GET /{*rest} -> app
EOF
}
write_conf() { gw_conf "$1" >"$GW_FILE.tmp" && mv "$GW_FILE.tmp" "$GW_FILE"; }
write_conf 0
"$GWC" check --deny-warnings "$GW_FILE" >"$OUT_DIR/check.txt" 2>&1 || die "soak.gw does not check cleanly: $(cat "$OUT_DIR/check.txt")"
GW_LOG="$OUT_DIR/gw.log"
: >"$GW_LOG"
threads=(); [ -n "$GW_THREADS" ] && threads=(--threads "$GW_THREADS")
# The access log (a line per request) is left out of gw.log but for the answers that failed
# (status 5xx): everything else is kept.
setsid "$GWC" serve "$GW_FILE" "${threads[@]}" 2> >(grep --line-buffered -Ev 'gw::access.* status=([1-4][0-9][0-9]) ' >>"$GW_LOG") >/dev/null </dev/null &
GWPID=$!
STARTED+=("$GWPID")
wait_port "$GW_PORT" 30 || die "gwc serve did not start (see $GW_LOG)"
say "gw pid $GWPID on :$GW_PORT (admin :$ADMIN_PORT), upstreams ${UPS[*]}, $DURATION s of load at c=$CONNS"

rss_kb() { awk '$1=="VmRSS:"{print $2}' "/proc/$GWPID/status" 2>/dev/null; }
fds() { ls "/proc/$GWPID/fd" 2>/dev/null | wc -l; }
metrics() {
  python3 - "$ADMIN_PORT" <<'EOF'
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
def total(name, labels=""):
    n = 0
    for line in text.splitlines():
        if line.startswith(name) and labels in line:
            n += float(line.rsplit(" ", 1)[1])
    return int(n)
print(total("gw_requests_total"), total("gw_requests_total", 'status="5xx"'),
      total("gw_retries_total"), total("gw_reloads_total"), total("gw_reload_failures_total"))
EOF
}
read -r M0_REQ M0_5XX M0_RETRIES M0_RELOADS M0_FAILED <<<"$(metrics)"

# ---------------------------------------------------------------- load and events
cat >"$RUN/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("SOAK requests=%d connect=%d read=%d write=%d status=%d timeout=%d p99_ms=%.2f max_ms=%.2f\n",
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(99) / 1000, latency.max / 1000))
end
EOF
"$WRK" -t "$WRK_THREADS" -c "$CONNS" -d "${DURATION}s" --timeout 10s -s "$RUN/report.lua" \
  "http://127.0.0.1:$GW_PORT/menu" >"$OUT_DIR/wrk.txt" 2>&1 &
WRKPID=$!

SAMPLES="$OUT_DIR/samples.tsv"; EVENTS="$OUT_DIR/events.tsv"
printf 't_s\trss_kb\tfds\tgw_5xx\tgw_retries\n' >"$SAMPLES"; printf 't_s\tevent\n' >"$EVENTS"
event() { printf '%s\t%s\n' "$1" "$2" >>"$EVENTS"; say "t=${1}s $2"; }
T0=$(date +%s)
gen=0; victim=0; declare -A RESTART_AT=()
RSS0=""; FDS0=""; RSS1=""; FDS1=""
# Kills fall halfway between two reloads, so that what each costs shows apart in samples.tsv.
next_sample=0; next_reload=$RELOAD_EVERY; next_kill=$(( RELOAD_EVERY / 2 ))
while :; do
  t=$(( $(date +%s) - T0 ))
  [ "$t" -ge "$DURATION" ] && break
  is_alive "$GWPID" || die "gwc serve exited (see $GW_LOG)"
  if [ "$t" -ge "$next_sample" ]; then
    next_sample=$(( next_sample + SAMPLE_EVERY ))
    r=$(rss_kb); f=$(fds); read -r _ m5 mr _ _ <<<"$(metrics)"
    printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$r" "$f" "$(( m5 - M0_5XX ))" "$(( mr - M0_RETRIES ))" >>"$SAMPLES"
    if [ -z "$RSS0" ] && [ "$t" -ge "$WARMUP" ]; then RSS0=$r; FDS0=$f; fi
    RSS1=$r; FDS1=$f
  fi
  if [ "$t" -ge "$next_reload" ]; then
    next_reload=$(( next_reload + RELOAD_EVERY ))
    gen=$((gen + 1))
    if [ $((gen % 2)) = 1 ]; then
      write_conf "$gen"; event "$t" "reload $gen: the file rewritten (route /soak/gen$gen)"
    else
      kill -HUP "$GWPID"; event "$t" "reload $gen: SIGHUP"
    fi
  fi
  if [ "$t" -ge "$next_kill" ]; then
    next_kill=$(( next_kill + KILL_EVERY ))
    if [ -z "${RESTART_AT[$victim]:-}" ]; then
      stop_group "${UPID[$victim]}" KILL
      RESTART_AT[$victim]=$((t + DOWN))
      event "$t" "upstream $victim (:${UPS[$victim]}) killed (SIGKILL)"
      victim=$(( (victim + 1) % 3 ))
    fi
  fi
  for i in "${!RESTART_AT[@]}"; do
    if [ "$t" -ge "${RESTART_AT[$i]}" ]; then
      start_upstream "$i"; unset "RESTART_AT[$i]"; event "$t" "upstream $i (:${UPS[$i]}) started again"
    fi
  done
  sleep 0.2
done
wait "$WRKPID"
# Upstreams still down come back, so the last samples see the gateway at rest.
for i in "${!RESTART_AT[@]}"; do start_upstream "$i"; done
sleep 1
read -r M1_REQ M1_5XX M1_RETRIES M1_RELOADS M1_FAILED <<<"$(metrics)"

# ---------------------------------------------------------------- report
line=$(grep '^SOAK ' "$OUT_DIR/wrk.txt") || die "wrk reported nothing (see $OUT_DIR/wrk.txt)"
val() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$line"; }
REQ=$(val requests); FAILED=$(( $(val connect) + $(val read) + $(val write) + $(val status) + $(val timeout) ))
SEEN=$(grep -c 'reloaded' "$GW_LOG")
REFUSED=$(grep -c 'reload refused' "$GW_LOG")
KILLS=$(grep -c 'killed' "$EVENTS")
pct() { python3 -c "print(f'{($2 - $1) * 100 / $1:+.1f}%')"; }
verdict() { if [ "$1" = 1 ]; then echo PASS; else echo FAIL; fi; }
ok_failed=$([ "$FAILED" = 0 ] && echo 1 || echo 0)
ok_rss=$(python3 -c "print(1 if abs($RSS1 - $RSS0) <= 0.10 * $RSS0 else 0)")
ok_fds=$(python3 -c "print(1 if $FDS1 - $FDS0 <= max(16, 0.10 * $FDS0) else 0)")
FD_MIN=$(awk -F'\t' 'NR>1 && $3!="" {if(m==""||$3<m)m=$3} END{print m}' "$SAMPLES")
FD_MAX=$(awk -F'\t' 'NR>1 && $3!="" {if($3>m)m=$3} END{print m}' "$SAMPLES")
RSS_MAX=$(awk -F'\t' 'NR>1 && $2!="" {if($2>m)m=$2} END{print m}' "$SAMPLES")
{
  echo "# gw soak: ${DURATION} s at c=$CONNS, a reload every ${RELOAD_EVERY} s, an upstream killed every ${KILL_EVERY} s (down ${DOWN} s)"
  echo
  echo "gw $GW_REV, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ); gwc serve ${threads[*]:-(one thread per core)}"
  echo
  echo "| measure | value | target | |"
  echo "| --- | --- | --- | --- |"
  echo "| GET requests (wrk) | $REQ ($(( REQ / DURATION ))/s) | | |"
  echo "| failed requests | $FAILED (non-2xx/3xx $(val status); connect $(val connect), read $(val read), write $(val write), timeout $(val timeout)) | 0 | $(verdict "$ok_failed") |"
  echo "| latency p99 / max | $(val p99_ms) ms / $(val max_ms) ms | | |"
  echo "| gateway: 5xx answered, retries | $(( M1_5XX - M0_5XX )), $(( M1_RETRIES - M0_RETRIES )) | | |"
  echo "| reloads made / seen in the log / counted / refused | $gen / $SEEN / $(( M1_RELOADS - M0_RELOADS )) / $REFUSED | all seen, none refused | $(verdict "$([ "$SEEN" = "$gen" ] && [ "$REFUSED" = 0 ] && echo 1 || echo 0)") |"
  echo "| upstream servers killed | $KILLS | | |"
  echo "| RSS after ${WARMUP} s / at the end (max) | $RSS0 KiB / $RSS1 KiB ($(pct "$RSS0" "$RSS1")) (max $RSS_MAX KiB) | within 10% | $(verdict "$ok_rss") |"
  echo "| file descriptors after ${WARMUP} s / at the end (min..max) | $FDS0 / $FDS1 ($FD_MIN..$FD_MAX) | at most max(16, 10%) more | $(verdict "$ok_fds") |"
  echo
  echo "Samples: samples.tsv (RSS, descriptors, the gateway's 5xx answers and retries so far, every ${SAMPLE_EVERY} s); events: events.tsv; gw's log (access lines of 5xx answers only): gw.log; wrk: wrk.txt."
} >"$OUT_DIR/report.md"
cat "$OUT_DIR/report.md"
say "results: $OUT_DIR"
[ "$ok_failed" = 1 ] && [ "$ok_rss" = 1 ] && [ "$ok_fds" = 1 ] && [ "$SEEN" = "$gen" ] && [ "$REFUSED" = 0 ]
