#!/usr/bin/env bash
# peers.sh — gw side by side with nginx and HAProxy as HTTP reverse proxies on loopback.
#
# Adopted from the shared peer harness (issue 6). It starts 3 identical upstreams (one nginx
# process, 1 worker, `return 200`), the proxy targets that round-robin over them with upstream
# keep-alive, then runs interleaved wrk rounds (A B C, B C A, ...) and prints a markdown table of
# medians, per-round ratios vs nginx-w1 and vs direct, proxy CPU per request and RSS. Everything
# it starts is stopped by PID on exit. nginx, HAProxy and wrk are installed with apt-get when
# missing (only when this script runs; the project's build and tests never need them).
#
# Targets (all by default, in this order):
#   direct       wrk straight to the first upstream (the ceiling)
#   nginx-w1     nginx, 1 worker            nginx-auto   nginx, one worker per core
#   haproxy-t1   HAProxy, 1 thread          haproxy-t2   HAProxy, 2 threads
#   tcp-floor    HAProxy, 1 thread, `mode tcp`: each client connection gets its own upstream
#                connection and bytes are copied both ways without HTTP. One read and one write
#                per message on each side, as every HTTP proxy here makes: the floor of what any
#                of them can cost (not in MODE=idle)
#   gw-t1        `gwc serve --threads 1 bench/bench.gw`   (compare with nginx-w1, haproxy-t1)
#   gw-auto      `gwc serve bench/bench.gw` (one thread per core; compare with nginx-auto, haproxy-t2)
#   gw-t1-jwt    the gw-t1 process, route `/guarded/` (JWT RS256 + require + limit) with a signed
#                token; its "x gw-t1" column is the policy route over the plain route, same run
#   [pingora-t<N> with PINGORA_BIN, as in the shared harness]
#
# Modes: MODE=load (default) measures throughput and latency; MODE=serve starts the targets and
# keeps them up (their pids and URLs in OUT_DIR/serving.tsv) for profiling; MODE=idle starts them afresh
# and measures memory per idle keep-alive client connection: bench/idle_conns.py opens IDLE_CONNS
# connections, sends one request on each, keeps them open, and the target's RSS before and after
# is read from /proc (the report divides the difference by the connections).
#
# Knobs (environment):
#   DURATION=5          seconds per measured wrk run
#   ROUNDS=3            interleaved rounds (each target x conns once per round)
#   CONNS="1 50 256"    wrk -c values
#   WRK_THREADS=1       wrk -t value (one wrk thread tops out near 90-120k rps here: see `direct`)
#   WARMUP=1            seconds of c=50 warm-up per target before round 1 (0 = none)
#   TARGETS="..."       subset/order of targets (see above)
#   BASE_PORT=19180     proxies listen on BASE_PORT+1.. ; UP_PORTS="9001 9002 9003"
#   GW_THREADS_T1=1     --threads of gw-t1;  GW_ARGS=""  extra `gwc serve` arguments
#   GW_LOG=file         where gw's log (one access line per request) goes: `file` (OUT_DIR/logs,
#                       as deployed with a log file) or `null` (/dev/null)
#   NO_BUILD=1          use target/release/gwc as it is (default: `cargo build --release` first)
#   GW_CMD='...' GW_PORT=... GW_NAME=gw-ext   one more gw-like target, as in the shared harness
#   IDLE_CONNS=10000    connections held in MODE=idle
#   PINGORA_BIN=/path/to/pingora_lb   adds pingora-t<N> for N in PINGORA_THREADS="1 2"
#   WRK_CPUS / SERVER_CPUS   optional taskset CPU lists (e.g. WRK_CPUS=0 SERVER_CPUS=1)
#   OUT_DIR             where raw.tsv / meta.tsv / report.md / logs go (default: mktemp -d)
#   NOISE_MAX=20 RETRY_NOISY=1   re-measure a run (up to RETRY_NOISY times) when CPU used by
#                       processes outside the experiment exceeded NOISE_MAX % of all CPUs
#   NO_INSTALL=1        never apt-get install missing tools (fail instead)
#   UPSTREAM_TLS=1      the upstreams speak HTTPS (nginx `ssl`, a CA and a certificate for
#                       `bench.upstream` made with openssl in the run dir, TLS session cache on):
#                       nginx proxies with `proxy_pass https://` + `proxy_ssl_verify on` +
#                       `proxy_ssl_session_reuse on`, HAProxy with `ssl verify required`, gw with
#                       `tls { ca ... server_name "bench.upstream" }`, all keeping upstream
#                       connections alive; `direct` is wrk over HTTPS; no tcp-floor
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
MODE="${MODE:-load}"
DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-1 50 256}"
WRK_THREADS="${WRK_THREADS:-1}"
WARMUP="${WARMUP:-1}"
BASE_PORT="${BASE_PORT:-19180}"
UP_PORTS="${UP_PORTS:-9001 9002 9003}"
UPSTREAM_TLS="${UPSTREAM_TLS:-0}"
GW_NAME="${GW_NAME:-gw-ext}"
GW_WAIT="${GW_WAIT:-60}"
GW_THREADS_T1="${GW_THREADS_T1:-1}"
GW_ARGS="${GW_ARGS:-}"
GW_LOG="${GW_LOG:-file}"
IDLE_CONNS="${IDLE_CONNS:-10000}"
PINGORA_THREADS="${PINGORA_THREADS:-1 2}"
OUT_DIR="${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/peers-bench.XXXXXX")}"
mkdir -p "$OUT_DIR"
RUN="$(mktemp -d "${TMPDIR:-/tmp}/peers-run.XXXXXX")"   # configs, pid files, temp paths
LOG="$OUT_DIR/logs"; mkdir -p "$LOG"
GWC="${GWC:-$ROOT/target/release/gwc}"   # another build of gwc (profiling) with NO_BUILD=1

say() { printf '[peers %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- tools
need() {  # need <binary> <debian package>
  command -v "$1" >/dev/null 2>&1 && return 0
  [ "${NO_INSTALL:-0}" = 1 ] && die "$1 missing (NO_INSTALL=1)"
  say "$1 missing: apt-get install -y $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=120 "$2" >"$LOG/apt-$2.log" 2>&1 \
    || { apt-get update -q >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >>"$LOG/apt-$2.log" 2>&1; } \
    || die "could not install $2 (see $LOG/apt-$2.log)"
  # Debian may start the packaged service; stop it by its pid file, we run our own.
  for pf in /run/nginx.pid /run/haproxy.pid; do
    [ -s "$pf" ] && kill "$(cat "$pf")" 2>/dev/null && say "stopped packaged service pid $(cat "$pf")"
  done
  return 0
}
need nginx nginx; need haproxy haproxy; need wrk wrk; need curl curl; need python3 python3; need openssl openssl
NGINX="$(command -v nginx)"; HAPROXY="$(command -v haproxy)"; WRK="$(command -v wrk)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "${NO_BUILD:-0}" != 1 ]; then
  say "cargo build --release (gwc)"
  (cd "$ROOT" && cargo build --release --bin gwc) >"$LOG/cargo-build.log" 2>&1 || die "build failed (see $LOG/cargo-build.log)"
fi
[ -x "$GWC" ] || die "$GWC missing (build it, or unset NO_BUILD)"
# What was measured: the commit, and whether the runtime or the CLI differed from it when the
# run started (gwc is built from the working tree).
GW_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD -- runtime src Cargo.toml 2>/dev/null || echo '+uncommitted')"

# ---------------------------------------------------------------- process bookkeeping
declare -a STARTED=()            # pids we started (each is a session/process-group leader)
declare -A TPID=() TPORT=() TPATH=() THDR=()   # target -> pid (the upstream for direct), port, path, header

is_alive() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; [ "${s%% *}" != Z ]; }
cleanup() {
  local rc=$?
  # SIGINT first (fast shutdown for nginx/haproxy/pingora/tokio ctrl_c), then TERM, then KILL.
  local sig pid alive
  for sig in INT TERM KILL; do
    for pid in "${STARTED[@]}"; do
      is_alive "$pid" && { kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null; }
    done
    for _ in $(seq 20); do
      alive=0
      for pid in "${STARTED[@]}"; do is_alive "$pid" && alive=1; done
      [ $alive = 0 ] && break; sleep 0.1
    done
    [ $alive = 0 ] && break
  done
  wait 2>/dev/null
  [ "${KEEP_RUN:-0}" = 1 ] || rm -rf "$RUN"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pin() { [ -n "${1:-}" ] && echo "taskset -c $1"; }

LASTPID=""
start() {  # start <name> <cmd...>  -> LASTPID (own session, so the whole group can be signalled by pid)
  local name=$1; shift
  local out="$LOG/$name.out"
  case "$name" in gw-t1|gw-auto) [ "$GW_LOG" = null ] && out=/dev/null ;; esac
  # shellcheck disable=SC2046
  setsid $(pin "${SERVER_CPUS:-}") "$@" >"$out" 2>&1 </dev/null &
  LASTPID=$!
  STARTED+=("$LASTPID")
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {  # wait_port <port> <timeout_s> <pid>
  local deadline=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    [ -n "${3:-}" ] && ! is_alive "$3" && return 1
    sleep 0.1
  done
  return 1
}

tree_pids() { local p=$1 c; echo "$p"; for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree_pids "$c"; done; }
cpu_ticks() {  # utime+stime of a process tree (threads included), in clock ticks
  local t=0 p s
  for p in $(tree_pids "$1"); do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }; set -- $s; t=$(( t + ${12} + ${13} ))
  done; echo $t
}
mem_kb() {  # mem_kb <pid> <VmHWM|VmRSS>  summed over the process tree
  local t=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk -v k="$2:" '$1==k{print $2}' "/proc/$p/status" 2>/dev/null); t=$(( t + ${v:-0} ))
  done; echo $t
}
nprocs() { tree_pids "$1" | wc -l; }
# Noise accounting: system-wide busy and steal ticks (/proc/stat) and CPU of this shell's reaped
# children (wrk), so each run can report how much CPU went to processes outside the experiment.
sys_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $9; exit}' /proc/stat; }   # "busy steal"
kids_ticks() { local s; s=$(cat "/proc/$$/stat"); s=${s##*) }; set -- $s; echo $(( ${14} + ${15} )); }

# ---------------------------------------------------------------- configs
read -r -a UPS <<<"$UP_PORTS"
[ "${#UPS[@]}" = 3 ] || die "UP_PORTS needs three ports (bench.gw has three servers)"
for p in "${UPS[@]}"; do port_free "$p" || die "upstream port $p busy"; done
mkdir -p "$RUN/tmp"

upstream_conf() {
  cat <<EOF
worker_processes 1;
pid $RUN/upstream.pid;
error_log $RUN/upstream-error.log warn;
events { worker_connections 8000; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $RUN/tmp/u_cb; proxy_temp_path $RUN/tmp/u_p; fastcgi_temp_path $RUN/tmp/u_f;
  uwsgi_temp_path $RUN/tmp/u_u; scgi_temp_path $RUN/tmp/u_s;
EOF
  local i=0
  local ssl="" certs=""
  if [ "$UPSTREAM_TLS" = 1 ]; then
    ssl=" ssl"
    certs="ssl_certificate $RUN/tls/upstream.crt; ssl_certificate_key $RUN/tls/upstream.key; ssl_session_cache shared:up:10m; "
  fi
  for p in "${UPS[@]}"; do i=$((i+1))
    printf '  server { listen 127.0.0.1:%s%s backlog=4096; %slocation / { default_type text/plain; return 200 "ok%s"; } }\n' "$p" "$ssl" "$certs" "$i"
  done
  echo "}"
}

nginx_proxy_conf() {  # <workers> <port> <tag>
  cat <<EOF
worker_processes $1;
pid $RUN/$3.pid;
error_log $RUN/$3-error.log warn;
events { worker_connections 12000; }
worker_rlimit_nofile 30000;
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  client_body_temp_path $RUN/tmp/$3_cb; proxy_temp_path $RUN/tmp/$3_p; fastcgi_temp_path $RUN/tmp/$3_f;
  uwsgi_temp_path $RUN/tmp/$3_u; scgi_temp_path $RUN/tmp/$3_s;
  upstream backend {
$(for p in "${UPS[@]}"; do echo "    server 127.0.0.1:$p;"; done)
    keepalive 1024;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$2 backlog=4096;
    location / {
$(if [ "$UPSTREAM_TLS" = 1 ]; then
  echo "      proxy_pass https://backend;"
  echo "      proxy_ssl_trusted_certificate $RUN/tls/ca.pem; proxy_ssl_verify on;"
  echo "      proxy_ssl_name bench.upstream; proxy_ssl_server_name on; proxy_ssl_session_reuse on;"
else
  echo "      proxy_pass http://backend;"
fi)
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
}

haproxy_ssl() {  # the upstream server options of UPSTREAM_TLS=1 (verified, SNI, sessions reused)
  [ "$UPSTREAM_TLS" = 1 ] && printf ' ssl verify required ca-file %s sni str(bench.upstream) verifyhost bench.upstream' "$RUN/tls/ca.pem"
}
haproxy_conf() {  # <threads> <port> [tcp]
  if [ "${3:-}" = tcp ]; then
    printf '%s\n' global "  nbthread $1" "  maxconn 9900" defaults "  mode tcp" \
      "  timeout connect 5s" "  timeout client 120s" "  timeout server 30s"
  else
    printf '%s\n' global "  nbthread $1" "  maxconn 9900" defaults "  mode http" \
      "  timeout connect 5s" "  timeout client 120s" "  timeout server 30s" \
      "  timeout http-keep-alive 120s" "  http-reuse always"
  fi
  cat <<EOF
frontend fe
  bind 127.0.0.1:$2
  default_backend be
backend be
  balance roundrobin
$(i=0; for p in "${UPS[@]}"; do i=$((i+1)); echo "  server s$i 127.0.0.1:$p$(haproxy_ssl)"; done)
EOF
}

# bench.gw with this instance's listen port and the harness's upstream ports; the key it reads
# is copied beside it (`file(...)` is relative to the .gw file).
gw_conf() {  # <port>
  sed -e "s/^listen 127\.0\.0\.1:[0-9]*/listen 127.0.0.1:$1/" \
      -e "s/server 127\.0\.0\.1:9001/server 127.0.0.1:${UPS[0]}/" \
      -e "s/server 127\.0\.0\.1:9002/server 127.0.0.1:${UPS[1]}/" \
      -e "s/server 127\.0\.0\.1:9003/server 127.0.0.1:${UPS[2]}/" \
      -e "$( [ "$UPSTREAM_TLS" = 1 ] && echo 's|^  pool {|  tls { ca "tls/ca.pem" server_name "bench.upstream" }\n  pool {|' )" \
      "$HERE/bench.gw"
}
# The URL of a target: `direct` is the upstream itself, over HTTPS with UPSTREAM_TLS=1.
target_url() {  # <target>
  local scheme=http; [ "$1" = direct ] && [ "$UPSTREAM_TLS" = 1 ] && scheme=https
  echo "$scheme://127.0.0.1:${TPORT[$1]}${TPATH[$1]}"
}
CURL_CA=(); [ "$UPSTREAM_TLS" = 1 ] && CURL_CA=(--cacert "$RUN/tls/ca.pem")
mkdir -p "$RUN/keys"; cp "$HERE/keys/rsa-public.pem" "$RUN/keys/"
if [ "$UPSTREAM_TLS" = 1 ]; then   # a throwaway CA and the upstreams' certificate (P-256)
  mkdir -p "$RUN/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$RUN/tls/ca.key" \
    -out "$RUN/tls/ca.pem" -days 2 -subj "/CN=bench CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign" >"$LOG/openssl.log" 2>&1 || die "openssl CA (see $LOG/openssl.log)"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$RUN/tls/upstream.key" \
    -out "$RUN/tls/upstream.csr" -subj "/CN=bench.upstream" >>"$LOG/openssl.log" 2>&1 || die "openssl key"
  printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:bench.upstream,IP:127.0.0.1\n' >"$RUN/tls/ext"
  openssl x509 -req -in "$RUN/tls/upstream.csr" -CA "$RUN/tls/ca.pem" -CAkey "$RUN/tls/ca.key" -days 2 \
    -extfile "$RUN/tls/ext" -out "$RUN/tls/upstream.crt" >>"$LOG/openssl.log" 2>&1 || die "openssl certificate"
fi

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
jwt_token() {  # an RS256 token bench.gw's `users` auth accepts, valid for 2 hours
  local h p s exp=$(( $(date +%s) + 7200 ))
  h=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
  p=$(printf '{"iss":"https://issuer.bench","aud":"bench","sub":"user-1","scope":"orders:read orders:write","exp":%s}' "$exp" | b64url)
  s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$HERE/keys/rsa-private.pem" -binary | b64url)
  printf '%s.%s.%s' "$h" "$p" "$s"
}

# ---------------------------------------------------------------- targets
ALL=(direct nginx-w1 nginx-auto haproxy-t1 haproxy-t2)
[ "$MODE" != idle ] && [ "$UPSTREAM_TLS" != 1 ] && ALL+=(tcp-floor)
if [ -n "${PINGORA_BIN:-}" ]; then
  [ -x "$PINGORA_BIN" ] || die "PINGORA_BIN=$PINGORA_BIN not executable"
  for n in $PINGORA_THREADS; do ALL+=("pingora-t$n"); done
fi
ALL+=(gw-t1 gw-auto)
[ "$MODE" != idle ] && ALL+=(gw-t1-jwt)
if [ -n "${GW_CMD:-}" ]; then
  [ -n "${GW_PORT:-}" ] || die "GW_CMD given without GW_PORT"
  ALL+=("$GW_NAME")
fi
read -r -a TGTS <<<"${TARGETS:-${ALL[*]}}"
# gw-t1-jwt runs on gw-t1's process: start that one too (it is measured only if listed).
declare -a PROCS=("${TGTS[@]}")
if [[ " ${TGTS[*]} " == *" gw-t1-jwt "* ]] && [[ " ${TGTS[*]} " != *" gw-t1 "* ]]; then PROCS+=(gw-t1); fi

say "mode: $MODE  out: $OUT_DIR   run dir: $RUN"
say "starting upstreams on ${UPS[*]}"
upstream_conf >"$RUN/upstream.conf"
start upstream "$NGINX" -e "$RUN/upstream-error.log" -p "$RUN" -c "$RUN/upstream.conf" -g 'daemon off;'; UPID=$LASTPID
for p in "${UPS[@]}"; do wait_port "$p" 10 "$UPID" || die "upstream :$p did not come up (see $LOG/upstream.out)"; done

off=0
for t in "${PROCS[@]}"; do
  off=$((off+1)); port=$((BASE_PORT+off))
  TPATH[$t]=/; THDR[$t]=""
  case "$t" in
    direct) TPORT[$t]=${UPS[0]}; TPID[$t]=$UPID; continue ;;
    gw-t1-jwt) continue ;;   # set up after gw-t1
    nginx-w1|nginx-auto)
      w=1; [ "$t" = nginx-auto ] && w=auto
      port_free "$port" || die "port $port busy"
      nginx_proxy_conf "$w" "$port" "$t" >"$RUN/$t.conf"
      start "$t" "$NGINX" -e "$RUN/$t-error.log" -p "$RUN" -c "$RUN/$t.conf" -g 'daemon off;' ;;
    haproxy-t*)
      port_free "$port" || die "port $port busy"
      haproxy_conf "${t#haproxy-t}" "$port" >"$RUN/$t.cfg"
      start "$t" "$HAPROXY" -db -f "$RUN/$t.cfg" ;;
    tcp-floor)
      port_free "$port" || die "port $port busy"
      haproxy_conf 1 "$port" tcp >"$RUN/$t.cfg"
      start "$t" "$HAPROXY" -db -f "$RUN/$t.cfg" ;;
    pingora-t*)
      port_free "$port" || die "port $port busy"
      ups_csv=$(printf '127.0.0.1:%s,' "${UPS[@]}"); ups_csv=${ups_csv%,}
      start "$t" env PINGORA_LISTEN="127.0.0.1:$port" PINGORA_UPSTREAMS="$ups_csv" \
        PINGORA_THREADS="${t#pingora-t}" "$PINGORA_BIN" ;;
    gw-t1|gw-auto)
      port_free "$port" || die "port $port busy"
      gw_conf "$port" >"$RUN/$t.gw"
      threads=(); [ "$t" = gw-t1 ] && threads=(--threads "$GW_THREADS_T1")
      # shellcheck disable=SC2086
      start "$t" "$GWC" serve "${threads[@]}" $GW_ARGS "$RUN/$t.gw" ;;
    "$GW_NAME")
      port=$GW_PORT
      port_free "$port" || die "GW_PORT $port busy before start"
      start "$t" env GW_PORT="$GW_PORT" UP_PORTS="$UP_PORTS" bash -c "exec $GW_CMD" ;;
    *) die "unknown target $t" ;;
  esac
  TPORT[$t]=$port; TPID[$t]=$LASTPID
done
if [ -n "${TPID[gw-t1]:-}" ]; then
  TPORT[gw-t1-jwt]=${TPORT[gw-t1]}; TPID[gw-t1-jwt]=${TPID[gw-t1]}
  TPATH[gw-t1-jwt]=/guarded/; THDR[gw-t1-jwt]="Authorization: Bearer $(jwt_token)"
fi

for t in "${PROCS[@]}"; do
  wt=10; [[ "$t" == gw* ]] && wt=$GW_WAIT
  wait_port "${TPORT[$t]}" "$wt" "${TPID[$t]}" || die "$t did not accept on :${TPORT[$t]} within ${wt}s (see $LOG/$t.out)"
  url="$(target_url "$t")"
  hdr=(); [ -n "${THDR[$t]}" ] && hdr=(-H "${THDR[$t]}")
  # sanity: 200s from all three upstreams through the target
  seen=$(for _ in 1 2 3 4 5 6 7 8 9; do curl -s -m 2 "${CURL_CA[@]}" "${hdr[@]}" "$url"; echo; done | sort -u | grep -c '^ok')
  code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "${CURL_CA[@]}" "${hdr[@]}" "$url")
  [ "$code" = 200 ] || die "$t answered HTTP $code"
  say "$t ready on :${TPORT[$t]}${TPATH[$t]} (pid ${TPID[$t]}, distinct upstream bodies in 9 GETs: $seen)"
done
if [ -n "${TPID[gw-t1]:-}" ] && [[ " ${TGTS[*]} " == *" gw-t1-jwt "* ]]; then
  code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:${TPORT[gw-t1]}/guarded/")
  [ "$code" = 401 ] || die "gw-t1-jwt without a token answered HTTP $code, not 401"
fi

# ---------------------------------------------------------------- MODE=serve: keep them up (profiling)
if [ "$MODE" = serve ]; then
  for t in "${TGTS[@]}"; do
    printf '%s\t%s\thttp://127.0.0.1:%s%s\t%s\n' "$t" "${TPID[$t]}" "${TPORT[$t]}" "${TPATH[$t]}" "${THDR[$t]}"
  done | tee "$OUT_DIR/serving.tsv"
  say "serving until interrupted (targets in $OUT_DIR/serving.tsv)"
  while :; do sleep 1; done
fi

# ---------------------------------------------------------------- idle connections (MODE=idle)
if [ "$MODE" = idle ]; then
  IDLE_OUT="$OUT_DIR/idle.tsv"
  printf 'target\tconns\trss_before_kb\trss_after_kb\tper_conn_bytes\tfailed\n' >"$IDLE_OUT"
  for t in "${TGTS[@]}"; do
    [ "$t" = direct ] && continue
    sleep 1
    before=$(mem_kb "${TPID[$t]}" VmRSS)
    # The tool holds the connections until it is told to let go (a line on stdin).
    coproc HOLD { python3 "$HERE/idle_conns.py" 127.0.0.1 "${TPORT[$t]}" "$IDLE_CONNS" 2>"$LOG/idle-$t.err"; }
    read -r -t 180 line <&"${HOLD[0]}" || line="FAILED 0 $IDLE_CONNS"
    sleep 2
    after=$(mem_kb "${TPID[$t]}" VmRSS)
    echo >&"${HOLD[1]}"; wait "$HOLD_PID" 2>/dev/null
    set -- $line   # HELD <open> <failed>
    open=${2:-0}; failed=${3:-$IDLE_CONNS}
    per=0; [ "$open" -gt 0 ] && per=$(( (after - before) * 1024 / open ))
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$open" "$before" "$after" "$per" "$failed" >>"$IDLE_OUT"
    say "$t: $open idle keep-alive connections: RSS $before -> $after KiB, $per bytes each ($failed failed)"
    is_alive "${TPID[$t]}" || die "$t (pid ${TPID[$t]}) died holding idle connections"
  done
  {
    echo "$(date -u +%Y-%m-%dT%H:%MZ); $(nproc) CPUs ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)); memory per idle keep-alive client connection"
    echo
    echo "| target | connections held | RSS before | RSS with them | per connection | failed |"
    echo "|---|---:|---:|---:|---:|---:|"
    tail -n +2 "$IDLE_OUT" | awk -F'\t' '{ printf "| %s | %s | %.1f MiB | %.1f MiB | %.1f KiB | %s |\n", $1, $2, $3/1024, $4/1024, $5/1024, $6 }'
  } | tee "$OUT_DIR/idle.md"
  exit 0
fi

# ---------------------------------------------------------------- measure
cat >"$RUN/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.status + e.timeout))
end
EOF

META="$OUT_DIR/meta.tsv"; RAW="$OUT_DIR/raw.tsv"
printf 'target\tport\tpid\tnprocs\tidle_rss_kb\tpeak_hwm_kb\n' >"$META"
printf 'round\tconns\ttarget\trequests\tduration_us\tp50_us\tp90_us\tp99_us\tmax_us\terrors\tcpu_ticks\tupstream_ticks\twrk_ticks\tsys_busy_ticks\tsteal_ticks\twindow_us\n' >"$RAW"
declare -A IDLE=()
for t in "${TGTS[@]}"; do IDLE[$t]=$(mem_kb "${TPID[$t]}" VmRSS); done

wrk_run() {  # wrk_run <target> <conns> <seconds> -> "RESULT ..." line
  local hdr=(); [ -n "${THDR[$1]}" ] && hdr=(-H "${THDR[$1]}")
  # shellcheck disable=SC2046
  timeout -k 5 $(( $3 + 30 )) $(pin "${WRK_CPUS:-}") "$WRK" -t"$WRK_THREADS" -c"$2" -d"$3"s --timeout 5s --latency \
    "${hdr[@]}" -s "$RUN/report.lua" "$(target_url "$1")"
}

if [ "$WARMUP" != 0 ]; then
  for t in "${TGTS[@]}"; do wrk_run "$t" 50 "$WARMUP" >"$LOG/warmup-$t.txt" 2>&1; done
fi

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
ntg=${#TGTS[@]}; read -r -a CS <<<"$CONNS"
NCPU=$(nproc); TCK=$(getconf CLK_TCK)
measure_once() {  # measure_once <round> <conns> <target> -> LINE (raw tsv row, empty on failure), OTHER_PCT
  local r=$1 c=$2 t=$3 before after ubefore uafter kbefore kafter sbefore safter stbefore stafter wbefore wafter out res ours cap
  before=$(cpu_ticks "${TPID[$t]}"); ubefore=$(cpu_ticks "$UPID"); kbefore=$(kids_ticks)
  read -r sbefore stbefore < <(sys_ticks); wbefore=$(date +%s%N)
  out=$(wrk_run "$t" "$c" "$DURATION" 2>&1)
  wafter=$(date +%s%N); read -r safter stafter < <(sys_ticks)
  kafter=$(kids_ticks); after=$(cpu_ticks "${TPID[$t]}"); uafter=$(cpu_ticks "$UPID")
  echo "$out" >"$LOG/r$r-c$c-$t.txt"
  LINE=""; OTHER_PCT=0
  res=$(grep '^RESULT' <<<"$out" | tail -1)
  [ -n "$res" ] || return 1
  set -- $res
  ours=$(( (after-before) + (kafter-kbefore) )); [ "$t" = direct ] || ours=$(( ours + uafter - ubefore ))
  cap=$(( NCPU * (wafter-wbefore) / 1000 * TCK / 1000000 )); [ "$cap" -gt 0 ] || cap=1
  OTHER_PCT=$(( ( (safter-sbefore) - ours ) * 100 / cap )); [ "$OTHER_PCT" -ge 0 ] || OTHER_PCT=0
  LINE=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$r" "$c" "$t" "$2" "$3" "$4" "$5" "$6" "$7" "$8" \
    $((after-before)) $((uafter-ubefore)) $((kafter-kbefore)) $((safter-sbefore)) $((stafter-stbefore)) $(( (wafter-wbefore) / 1000 )))
  RPS=$(awk -v q="$2" -v d="$3" 'BEGIN{printf "%.0f", q/(d/1e6)}'); P99=$6; ERR=$8
}

NOISE_MAX="${NOISE_MAX:-20}"; RETRY_NOISY="${RETRY_NOISY:-1}"
head -1 "$RAW" >"$OUT_DIR/discarded.tsv"
total=$(( ROUNDS * ${#CS[@]} * ntg )); n=0; retried=0
say "measuring: $ROUNDS rounds x conns(${CS[*]}) x targets(${TGTS[*]}) x ${DURATION}s = $total runs (~$(( total * (DURATION + 1) / 60 + 1 )) min)"
for r in $(seq 1 "$ROUNDS"); do
  for c in "${CS[@]}"; do
    for i in $(seq 0 $((ntg-1))); do
      t=${TGTS[$(( (i + r - 1) % ntg ))]}   # rotate order each round
      n=$((n+1)); attempt=0
      while :; do
        if ! measure_once "$r" "$c" "$t"; then say "run $n/$total $t c=$c: no result (see $LOG/r$r-c$c-$t.txt)"; break; fi
        if [ "$OTHER_PCT" -gt "$NOISE_MAX" ] && [ "$attempt" -lt "$RETRY_NOISY" ]; then
          # CPU used outside the experiment (another tenant, builds...): keep the row aside, measure again once
          echo "$LINE" >>"$OUT_DIR/discarded.tsv"; attempt=$((attempt+1)); retried=$((retried+1))
          say "run $n/$total r$r c=$c $t: $RPS rps but other-CPU ${OTHER_PCT}% > ${NOISE_MAX}%: retrying"
          sleep 2; continue
        fi
        echo "$LINE" >>"$RAW"
        say "run $n/$total r$r c=$c $t: $RPS rps p99=${P99}us err=$ERR other-CPU=${OTHER_PCT}%"
        break
      done
      is_alive "${TPID[$t]}" || die "$t (pid ${TPID[$t]}) died during run"
      sleep 0.3
    done
  done
done

for t in "${TGTS[@]}"; do
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${TPORT[$t]}" "${TPID[$t]}" "$(nprocs "${TPID[$t]}")" "${IDLE[$t]}" \
    "$(mem_kb "${TPID[$t]}" VmHWM)" >>"$META"
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "$(date -u +%Y-%m-%dT%H:%MZ); $(nproc) CPUs ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo));" \
       "$("$NGINX" -v 2>&1 | sed 's/.*: //'), haproxy $("$HAPROXY" -v | awk 'NR==1{print $3}'), $("$WRK" -v 2>&1 | awk 'NR==1{print $1" "$2}')," \
       "gw $GW_REV (GW_LOG=$GW_LOG)$([ "$UPSTREAM_TLS" = 1 ] && echo '; upstreams over TLS (UPSTREAM_TLS=1)')"
  echo "wrk -t$WRK_THREADS -c{${CS[*]}} -d${DURATION}s --latency, $ROUNDS interleaved rounds (order rotated per round)," \
       "WRK_CPUS=${WRK_CPUS:-any} SERVER_CPUS=${SERVER_CPUS:-any}; loadavg before: $LOAD_START, after: $LOAD_END;" \
       "$retried run(s) re-measured because other-CPU > ${NOISE_MAX}% (rows kept in discarded.tsv)"
  echo
  python3 "$HERE/peers_report.py" "$RAW" "$META" "${TGTS[@]}"
} | tee "$OUT_DIR/report.md"
say "raw data: $RAW  meta: $META  report: $OUT_DIR/report.md"
