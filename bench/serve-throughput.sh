#!/usr/bin/env bash
# Requests per second and latency percentiles of the long-lived deployment on one host:
# `suf dealer` fills two pools, two `suf serve --pool` processes (loopback peer link,
# authenticated by the pool secret), then N sequential `suf client --json` requests.
#
#   bench/serve-throughput.sh SUF BACKEND PROGRAM SEQ N "TEXT" OUTDIR
#
# Writes OUTDIR/client-*.json (one per request), OUTDIR/serve{0,1}.log and prints a summary
# (the first request is a warm-up and is left out of it).
set -euo pipefail
SUF=$1 BACKEND=$2 PROG=$3 SEQ=$4 N=$5 TEXT=$6 OUT=$7
W=$(mktemp -d); trap 'kill $P0 $P1 2>/dev/null || true; rm -rf "$W"' EXIT
mkdir -p "$OUT"
"$SUF" certs --out "$W/certs" > /dev/null
t0=$(date +%s.%N)
"$SUF" dealer --program "$PROG" --seq "$SEQ" --count $((N + 1)) --pool0 "$W/pool0" --pool1 "$W/pool1" > "$OUT/dealer.log" 2>&1
t1=$(date +%s.%N)
echo "dealer: $((N + 1)) streams in $(python3 -c "print(round($t1 - $t0, 2))") s" | tee -a "$OUT/summary.txt"
PORT=$((20000 + RANDOM % 20000))
"$SUF" serve --party 0 --backend "$BACKEND" --pool "$W/pool0" --state "$W/state0" --tls "$W/certs/p0" \
  --listen 127.0.0.1:$PORT --api 127.0.0.1:0 > "$W/s0.out" 2> "$OUT/serve0.log" & P0=$!
"$SUF" serve --party 1 --backend "$BACKEND" --pool "$W/pool1" --state "$W/state1" --tls "$W/certs/p1" \
  --connect 127.0.0.1:$PORT --api 127.0.0.1:0 > "$W/s1.out" 2> "$OUT/serve1.log" & P1=$!
api() { for _ in $(seq 600); do l=$(head -n1 "$1" 2>/dev/null || true); [ -n "$l" ] && { echo "$l" | python3 -c 'import json,sys; print(json.load(sys.stdin)["api"])'; return; }; sleep 0.1; done; echo "server did not start" >&2; exit 1; }
A0=$(api "$W/s0.out"); A1=$(api "$W/s1.out")
t2=$(date +%s.%N)
for i in $(seq 0 "$N"); do
  "$SUF" client --json --timeout 300 --p0 "$A0" --p1 "$A1" --certs "$W/certs/client" --text "$TEXT" > "$OUT/client-$i.json"
done
t3=$(date +%s.%N)
echo "requests: $((N + 1)) in $(python3 -c "print(round($t3 - $t2, 2))") s (client processes included)" | tee -a "$OUT/summary.txt"
python3 - "$OUT" "$N" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys, statistics
out, n = sys.argv[1], int(sys.argv[2])
rows = [json.load(open(f"{out}/client-{i}.json")) for i in range(1, n + 1)]
def pick(r, *ks):
    for k in ks:
        if k in r: return r[k]
    return None
print("all equal to the plain interpreter:", all(r.get("matches_plain") for r in rows))
for r in rows:
    pp = r.get("per_party") or []
    slow = max(pp, key=lambda q: q.get("online_ms", 0)) if pp else {}
    r["api_ms"] = r["latency_ms"] - max(q.get("key_load_ms", 0) + q.get("prepare_ms", 0) + q.get("online_ms", 0) for q in pp) if pp else None
for k in ["latency_ms", "online_ms", "api_ms"]:
    v = sorted(x for x in (pick(r, k) for r in rows) if isinstance(x, (int, float)))
    if v:
        p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
        print(f"{k}: p50 {statistics.median(v):.1f}  p99 {p(0.99):.1f}  min {v[0]:.1f}  max {v[-1]:.1f}  (n={len(v)})")
PY
