#!/usr/bin/env bash
# compress.sh — CPU per MiB compressed: gw's `compress { gzip level L }` against nginx's
# `gzip_comp_level L`, the same level, the same body, in the same run.
#
# One nginx (1 worker, gzip off) serves a text body of SIZE_KIB from memory; two proxies in front
# of it compress it with gzip at LEVEL: nginx (1 worker, `gzip on`, `gzip_proxied any`) and
# `gwc serve --threads 1` with `compress { gzip level LEVEL }`. Both are first checked (the answer
# is gzip and decodes to the body), then wrk runs DURATION seconds per target with
# `Accept-Encoding: gzip`, interleaved over ROUNDS (A B, B A, ...). Each run's CPU time of the
# proxy's process tree (utime + stime from /proc) is divided by the MiB of body it compressed
# (answers x SIZE_KIB): the report gives CPU ms per MiB, its ratio to nginx's, throughput and the
# compressed size. Everything it starts is stopped by PID on exit.
#
# Knobs (environment):
#   DURATION=10  seconds per wrk run        ROUNDS=3       interleaved rounds
#   LEVEL=5      the gzip level of both     SIZE_KIB=256   the body's size
#   CONNS=8      wrk -c                     WRK_THREADS=1  wrk -t
#   BASE_PORT=19280  ports BASE_PORT (upstream), +1 (nginx), +2 (gw)
#   NO_BUILD=1   use GWC as it is (default: `cargo build --release --bin gwc` first)
#   GWC=...      the gwc binary (default target/release/gwc)
#   OUT_DIR      where report.md, raw.tsv and logs go (default: mktemp -d)
#   NO_INSTALL=1 never apt-get install nginx, wrk or curl (fail instead)
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
LEVEL="${LEVEL:-5}"
SIZE_KIB="${SIZE_KIB:-256}"
CONNS="${CONNS:-8}"
WRK_THREADS="${WRK_THREADS:-1}"
BASE_PORT="${BASE_PORT:-19280}"
GWC="${GWC:-$ROOT/target/release/gwc}"
OUT_DIR="${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/compress-bench.XXXXXX")}"
mkdir -p "$OUT_DIR/logs"
RUN="$(mktemp -d "${TMPDIR:-/tmp}/compress-run.XXXXXX")"
LOG="$OUT_DIR/logs"

say() { printf '[compress %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

need() {  # need <binary> <debian package>
  command -v "$1" >/dev/null 2>&1 && return 0
  [ "${NO_INSTALL:-0}" = 1 ] && die "$1 missing (NO_INSTALL=1)"
  say "$1 missing: apt-get install -y $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >"$LOG/apt-$2.log" 2>&1 \
    || { apt-get update -q >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >>"$LOG/apt-$2.log" 2>&1; } \
    || die "could not install $2 (see $LOG/apt-$2.log)"
  [ -s /run/nginx.pid ] && kill "$(cat /run/nginx.pid)" 2>/dev/null
  return 0
}
need nginx nginx; need wrk wrk; need curl curl; need gzip gzip
NGINX="$(command -v nginx)"; WRK="$(command -v wrk)"

if [ "${NO_BUILD:-0}" != 1 ]; then
  say "cargo build --release (gwc)"
  (cd "$ROOT" && cargo build --release --bin gwc) >"$LOG/cargo-build.log" 2>&1 || die "build failed (see $LOG/cargo-build.log)"
fi
[ -x "$GWC" ] || die "$GWC missing (build it, or unset NO_BUILD)"

declare -a STARTED=()
is_alive() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; [ "${s%% *}" != Z ]; }
cleanup() {
  local rc=$? sig pid
  for sig in INT TERM KILL; do
    for pid in "${STARTED[@]}"; do is_alive "$pid" && kill -"$sig" -- "-$pid" 2>/dev/null; done
    sleep 0.3
  done
  wait 2>/dev/null
  rm -rf "$RUN"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LASTPID=""
start() {  # start <name> <cmd...>: in its own session, so its group can be signalled by pid
  local name=$1; shift
  setsid "$@" >"$LOG/$name.out" 2>&1 </dev/null &
  LASTPID=$!
  STARTED+=("$LASTPID")
}
wait_port() {  # wait_port <port> <timeout_s>
  local deadline=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
tree_pids() { local p=$1 c; echo "$p"; for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree_pids "$c"; done; }
cpu_ticks() {  # utime + stime of a process tree, in clock ticks
  local t=0 p s
  for p in $(tree_pids "$1"); do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }; set -- $s; t=$(( t + ${12} + ${13} ))
  done; echo $t
}
HZ="$(getconf CLK_TCK)"

# ---------------------------------------------------------------- the body and the servers
UP=$BASE_PORT; NG=$((BASE_PORT + 1)); GW=$((BASE_PORT + 2))
mkdir -p "$RUN/www" "$RUN/tmp"
# nginx's workers do not run as root: they read the body and may buffer a proxied answer in tmp.
chmod 755 "$RUN" "$RUN/www"; chmod 1777 "$RUN/tmp"
python3 - "$RUN/www/menu.txt" "$((SIZE_KIB * 1024))" <<'PY'
import sys
path, size = sys.argv[1], int(sys.argv[2])
words = "soup bread cheese olives tea lemonade noodles rice curry dumplings pie".split()
out, i = [], 0
while sum(map(len, out)) < size:
    out.append(f"{i:07d} {words[i % len(words)]} {words[(i * 7) % len(words)]} {i * 31 % 1000}.{i % 100:02d}\n")
    i += 1
open(path, "w").write("".join(out)[:size])
PY
chmod 644 "$RUN/www/menu.txt"

temps() { echo "client_body_temp_path $RUN/tmp/$1_cb; proxy_temp_path $RUN/tmp/$1_p; fastcgi_temp_path $RUN/tmp/$1_f; uwsgi_temp_path $RUN/tmp/$1_u; scgi_temp_path $RUN/tmp/$1_s;"; }
cat >"$RUN/upstream.conf" <<EOF
worker_processes 1;
pid $RUN/upstream.pid;
error_log $RUN/upstream-error.log warn;
events { worker_connections 4000; }
http {
  access_log off; gzip off; $(temps up)
  keepalive_requests 100000000;
  open_file_cache max=16;
  server { listen 127.0.0.1:$UP; root $RUN/www; default_type text/plain; }
}
EOF
cat >"$RUN/nginx.conf" <<EOF
worker_processes 1;
pid $RUN/nginx.pid;
error_log $RUN/nginx-error.log warn;
events { worker_connections 4000; }
http {
  access_log off; $(temps ng)
  keepalive_requests 100000000;
  upstream backend { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NG;
    gzip on; gzip_comp_level $LEVEL; gzip_types text/plain; gzip_min_length 1024; gzip_proxied any;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
cat >"$RUN/gw.gw" <<EOF
listen 127.0.0.1:$GW
upstream menu { server 127.0.0.1:$UP }
compress { gzip  level $LEVEL  min_size 1KiB  types "text/plain" }
route GET /{*path} -> menu
EOF

start upstream "$NGINX" -g 'daemon off;' -c "$RUN/upstream.conf"
wait_port "$UP" 10 || die "the upstream did not start (see $LOG/upstream.out)"
start nginx "$NGINX" -g 'daemon off;' -c "$RUN/nginx.conf"; PID_nginx=$LASTPID
start gw "$GWC" serve --threads 1 "$RUN/gw.gw"; PID_gw=$LASTPID
wait_port "$NG" 10 || die "nginx did not start (see $LOG/nginx.out)"
wait_port "$GW" 30 || die "gw did not start (see $LOG/gw.out)"

# ---------------------------------------------------------------- both compress, and correctly
declare -A ENCODED=()
for t in nginx gw; do
  port=$NG; [ "$t" = gw ] && port=$GW
  curl -s -D "$RUN/$t.head" -H 'Accept-Encoding: gzip' -o "$RUN/$t.gz" "http://127.0.0.1:$port/menu.txt" \
    || die "$t: no answer"
  grep -qi "^content-encoding: *gzip" "$RUN/$t.head" || die "$t: the answer is not gzip: $(tr -d "\r" <"$RUN/$t.head" | tr "\n" " ")"
  gzip -dc "$RUN/$t.gz" | cmp -s - "$RUN/www/menu.txt" || die "$t: the gzip answer does not decode to the body"
  ENCODED[$t]=$(stat -c %s "$RUN/$t.gz")
  say "$t: gzip level $LEVEL, ${SIZE_KIB} KiB -> ${ENCODED[$t]} bytes"
done

# ---------------------------------------------------------------- interleaved runs
printf 'round\ttarget\trequests\tcpu_ticks\tseconds\n' >"$OUT_DIR/raw.tsv"
for r in $(seq "$ROUNDS"); do
  order=(nginx gw); [ $((r % 2)) = 0 ] && order=(gw nginx)
  for t in "${order[@]}"; do
    port=$NG; pid=$PID_nginx; [ "$t" = gw ] && { port=$GW; pid=$PID_gw; }
    before=$(cpu_ticks "$pid")
    out=$("$WRK" -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/menu.txt" 2>&1)
    after=$(cpu_ticks "$pid")
    reqs=$(awk '/requests in/{print $1; exit}' <<<"$out")
    errs=$(awk '/Non-2xx|Socket errors/{print; exit}' <<<"$out")
    [ -n "$errs" ] && say "$t round $r: $errs"
    printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$t" "${reqs:-0}" "$((after - before))" "$DURATION" >>"$OUT_DIR/raw.tsv"
    say "$t round $r: ${reqs:-0} answers, $((after - before)) CPU ticks"
  done
done

# ---------------------------------------------------------------- report
python3 - "$OUT_DIR/raw.tsv" "$SIZE_KIB" "$HZ" "$LEVEL" "${ENCODED[nginx]}" "${ENCODED[gw]}" >"$OUT_DIR/report.md" <<'PY'
import csv, statistics, sys
raw, size_kib, hz, level, enc_ng, enc_gw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
rows = list(csv.DictReader(open(raw), delimiter="\t"))
per = {}
for r in rows:
    reqs, ticks = int(r["requests"]), int(r["cpu_ticks"])
    mib = reqs * size_kib / 1024
    if mib > 0:
        per.setdefault(r["target"], []).append((ticks / hz * 1000 / mib, reqs / float(r["seconds"])))
print(f"# CPU per MiB compressed, gzip level {level}, {size_kib} KiB body\n")
print("| target | CPU ms / MiB (median) | x nginx | answers/s (median) | encoded bytes |")
print("| --- | --- | --- | --- | --- |")
base = statistics.median(x for x, _ in per.get("nginx", [(float("nan"), 0)]))
for t, enc in (("nginx", enc_ng), ("gw", enc_gw)):
    if t not in per:
        print(f"| {t} | - | - | - | {enc} |")
        continue
    ms = statistics.median(x for x, _ in per[t])
    rps = statistics.median(y for _, y in per[t])
    print(f"| {t} | {ms:.2f} | {ms / base:.2f} | {rps:.0f} | {enc} |")
PY
cat "$OUT_DIR/report.md"
say "report: $OUT_DIR/report.md"
