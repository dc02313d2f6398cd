#!/usr/bin/env bash
# redis.sh — what a limit kept in Redis costs, and how many gateways one Redis serves (issue 17,
# item 7). Not part of CI.
#
# One `gwc serve` and one local redis-server (started here, no persistence). Three routes that the
# gateway answers itself, so that nothing but the limit differs between them:
#   /plain   no limit
#   /local   a limit in the gateway's memory (GCRA, governor)
#   /shared  the same limit with `store` on the redis-server (one EVALSHA round trip per request)
# The limits' rate is far above what the run reaches: every request is checked and none refused.
# wrk runs each route for DURATION seconds at each of CONNS, ROUNDS interleaved rounds (the order
# rotated per round); the report gives requests/s and latency percentiles per route (medians over
# rounds) and what the Redis limit adds over the local one.
#
# Then Redis alone: redis-benchmark sends the gateway's own command (EVALSHA of the same script,
# one key per client) at RB_CLIENTS connections, pipelined RB_PIPELINE deep (the gateway pipelines
# on its one connection per store), RB_REQUESTS calls. Each request through a `store` limit is one
# such call, so one Redis serves about
#     gateways = Redis's EVALSHA/s  /  one gateway's requests/s through /shared
# gateways each as loaded as this one (more if they are less loaded: divide by their real rate).
# On one machine gw, wrk and Redis share the cores, so both numbers are lower than on separate
# machines; the report prints the inputs with the quotient.
#
# Knobs (environment):
#   DURATION=10  ROUNDS=3  CONNS="1 50"  WRK_THREADS=1  WARMUP=3
#   GW_THREADS=            `gwc serve --threads` (default: one per core)
#   RB_REQUESTS=200000  RB_CLIENTS=50  RB_PIPELINE=16
#   GWC=target/release/gwc   NO_BUILD=1 uses it as it is (default: `cargo build --release` first)
#   NO_INSTALL=1       never apt-get install wrk or redis-server (fail instead)
#   OUT_DIR            where report.md, raw.tsv and the logs go (default: mktemp -d)
#
# Example (a smoke run of a few seconds): DURATION=1 ROUNDS=1 WARMUP=0 RB_REQUESTS=2000 bench/redis.sh
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
read -r -a CS <<<"${CONNS:-1 50}"
WRK_THREADS="${WRK_THREADS:-1}"
WARMUP="${WARMUP:-3}"
RB_REQUESTS="${RB_REQUESTS:-200000}"
RB_CLIENTS="${RB_CLIENTS:-50}"
RB_PIPELINE="${RB_PIPELINE:-16}"
GWC="${GWC:-$ROOT/target/release/gwc}"
OUT_DIR="${OUT_DIR:-$(mktemp -d)}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/logs"; mkdir -p "$LOG"

say() { printf '[redis %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { say "error: $*"; exit 1; }
need() {  # need <command> <debian package>
  command -v "$1" >/dev/null && return 0
  [ -n "${NO_INSTALL:-}" ] && die "$1 is missing (apt-get install $2)"
  say "installing $2"
  apt-get install -y -q "$2" >"$LOG/apt-$2.txt" 2>&1 || die "apt-get install $2 failed (see $LOG/apt-$2.txt)"
}
need wrk wrk; need redis-server redis-server; need redis-cli redis-tools; need python3 python3

if [ -z "${NO_BUILD:-}" ]; then
  say "cargo build --release --bin gwc"
  (cd "$ROOT" && cargo build -q --release --bin gwc) || die "build failed"
fi
[ -x "$GWC" ] || die "no gwc at $GWC"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT

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

read -r GW_PORT REDIS_PORT <<<"$(free_ports 2)"
say "redis-server on :$REDIS_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUT_DIR" \
  >"$LOG/redis.txt" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 || die "redis-server did not start (see $LOG/redis.txt)"

cat >"$OUT_DIR/redis.gw" <<EOF
listen 127.0.0.1:$GW_PORT
store shared redis "redis://127.0.0.1:$REDIS_PORT" { timeout 1s on_error deny }
limit local_l { rate 1000000000/s burst 1000000 key client_ip }
limit shared_l { rate 1000000000/s burst 1000000 key client_ip store shared }
route GET /plain { respond 200 "ok" }
route GET /local { limit local_l respond 200 "ok" }
route GET /shared { limit shared_l respond 200 "ok" }
EOF
threads=(); [ -n "${GW_THREADS:-}" ] && threads=(--threads "$GW_THREADS")
"$GWC" serve "$OUT_DIR/redis.gw" "${threads[@]}" >"$LOG/gw.txt" 2>&1 &
GWPID=$!; PIDS+=("$GWPID")
wait_port "$GW_PORT" 30 || die "gwc serve did not start (see $LOG/gw.txt)"
# `on_error deny`: a request that did not reach Redis is a 429, which wrk counts as an error.
for r in plain local shared; do
  code=$(python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://127.0.0.1:$GW_PORT/$r', timeout=5).status)" 2>/dev/null)
  [ "$code" = 200 ] || die "/$r answered ${code:-nothing} (see $LOG/gw.txt)"
done
say "gw pid $GWPID on :$GW_PORT; ${#CS[@]} connection count(s) x 3 routes x $ROUNDS round(s) x $DURATION s"

cat >"$OUT_DIR/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
wrk_run() {  # wrk_run <route> <conns> <seconds>
  timeout -k 5 $(( $3 + 30 )) wrk -t"$WRK_THREADS" -c"$2" -d"$3"s --timeout 5s -s "$OUT_DIR/report.lua" \
    "http://127.0.0.1:$GW_PORT/$1"
}

RAW="$OUT_DIR/raw.tsv"
printf 'round\tconns\troute\trequests\tduration_us\tp50_us\tp90_us\tp99_us\tmax_us\terrors\n' >"$RAW"
ROUTES=(plain local shared)
if [ "$WARMUP" != 0 ]; then
  for r in "${ROUTES[@]}"; do wrk_run "$r" 50 "$WARMUP" >"$LOG/warmup-$r.txt" 2>&1; done
fi
for round in $(seq "$ROUNDS"); do
  for c in "${CS[@]}"; do
    n=${#ROUTES[@]}
    for i in $(seq 0 $(( n - 1 ))); do
      r=${ROUTES[$(( (i + round - 1) % n ))]}
      line=$(wrk_run "$r" "$c" "$DURATION" 2>&1 | tee "$LOG/wrk-$round-$c-$r.txt" | awk '/^RESULT/{$1=""; print}')
      [ -n "$line" ] || die "wrk gave no result (see $LOG/wrk-$round-$c-$r.txt)"
      # shellcheck disable=SC2086
      printf '%s\t%s\t%s\t%s\n' "$round" "$c" "$r" "$(echo $line | tr ' ' '\t')" >>"$RAW"
      say "round $round c=$c /$r: $line"
    done
  done
done

# Redis alone: the gateway's command, as redis-benchmark sends it.
SHA=$(redis-cli -p "$REDIS_PORT" script load "$(awk '/^pub\(crate\) const SCRIPT: &str = r#"$/{on=1; next} /^"#;$/{on=0} on' \
  "$ROOT/runtime/src/policy/redis.rs")")
[ ${#SHA} = 40 ] || die "could not load the script into Redis: $SHA"
RB="$OUT_DIR/redis-benchmark.csv"
if command -v redis-benchmark >/dev/null; then
  say "redis-benchmark: EVALSHA x $RB_REQUESTS, $RB_CLIENTS clients, pipeline $RB_PIPELINE"
  redis-benchmark -p "$REDIS_PORT" -n "$RB_REQUESTS" -c "$RB_CLIENTS" -P "$RB_PIPELINE" -r 100000 --csv \
    EVALSHA "$SHA" 1 "gw:limit:bench:__rand_int__" 1 1000000 >"$RB" 2>"$LOG/redis-benchmark.txt" \
    || die "redis-benchmark failed (see $LOG/redis-benchmark.txt)"
else
  say "redis-benchmark is missing (Debian: redis-tools): no Redis figure"
  : >"$RB"
fi

python3 - "$RAW" "$RB" "$DURATION" "$ROUNDS" "$WRK_THREADS" "${GW_THREADS:-per core}" "$(nproc)" \
  "$RB_CLIENTS" "$RB_PIPELINE" <<'EOF' | tee "$OUT_DIR/report.md"
import csv, statistics, sys
raw, rb, duration, rounds, wrk_threads, gw_threads, cores, rb_clients, rb_pipeline = sys.argv[1:]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
med = statistics.median
print(f"# A limit in Redis against one in memory\n")
print(f"wrk -t{wrk_threads}, {duration} s per run, {rounds} interleaved round(s), medians over rounds; "
      f"gwc serve --threads {gw_threads}, wrk and redis-server on the same {cores} core(s).\n")
print("| conns | route | requests/s | p50 µs | p90 µs | p99 µs | errors |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
stats = {}
for c in sorted({int(r["conns"]) for r in rows}):
    for route in ("plain", "local", "shared"):
        runs = [r for r in rows if int(r["conns"]) == c and r["route"] == route]
        if not runs:
            continue
        rps = med(int(r["requests"]) * 1e6 / max(1, int(r["duration_us"])) for r in runs)
        p = {k: med(int(r[f"{k}_us"]) for r in runs) for k in ("p50", "p90", "p99")}
        errors = sum(int(r["errors"]) for r in runs)
        stats[(c, route)] = (rps, p)
        print(f"| {c} | /{route} | {rps:,.0f} | {p['p50']:,.0f} | {p['p90']:,.0f} | {p['p99']:,.0f} | {errors} |")
print("\nWhat the Redis limit adds over the local one (same connections):\n")
for c in sorted({c for c, _ in stats}):
    if (c, "local") in stats and (c, "shared") in stats:
        (lr, lp), (sr, sp) = stats[(c, "local")], stats[(c, "shared")]
        print(f"- c={c}: {sr / lr:.0%} of the requests/s ({sr:,.0f} against {lr:,.0f}); "
              f"p50 {sp['p50'] - lp['p50']:+,.0f} µs, p99 {sp['p99'] - lp['p99']:+,.0f} µs")
redis_rps = None
for line in csv.reader(open(rb)):
    if line and line[0].startswith("EVALSHA"):
        redis_rps = float(line[1])
print("\n## How many gateways one Redis serves\n")
if redis_rps is None:
    print("No redis-benchmark figure (redis-benchmark missing or failed).")
else:
    print(f"redis-benchmark, the gateway's EVALSHA, {rb_clients} clients, pipeline {rb_pipeline}: "
          f"**{redis_rps:,.0f} calls/s** (one Redis thread).\n")
    best = max(((rps, c) for (c, route), (rps, _) in stats.items() if route == "shared"), default=None)
    if best:
        rps, c = best
        print(f"One gateway through /shared at c={c}: {rps:,.0f} requests/s, one call each. So one Redis "
              f"serves about {redis_rps:,.0f} / {rps:,.0f} = **{redis_rps / rps:,.1f} gateways** as loaded "
              f"as this one, or N = {redis_rps:,.0f} / R gateways at R limited requests/s each "
              f"(a route with two `store` limits makes two calls).")
    print("\nBoth figures come from one machine whose cores gw, wrk and Redis share: on separate "
          "machines each is higher, and the network round trip adds to the latency above.")
EOF
say "report: $OUT_DIR/report.md"
