#!/bin/bash
# Session 11, call 4: the deployed servers on the GPU again, with the serve fix (a paired
# request's run is awaited): `suf dealer --backend cuda` → two `suf serve --pool --backend cuda`
# processes (TLS peer link on loopback) → `suf client`; bert-base (seq 128) and MiniLM-L6 (real
# weights rounded to F16, as a cache entry of its name; a 16-token bucket).
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
mkdir -p .device/bin2 && gunzip -c .device/pack4/suf.gz > .device/bin2/suf && chmod +x .device/bin2/suf
tar -C .device -xzf .device/pack4/minilm.tgz
S=$PWD/.device/bin2/suf
O=$OUT
TEXT="I loved every minute of it, the acting was superb!"
serve_one() {  # NAME PROGRAM SEQ [--bucket]
  local name=$1 prog=$2 seq=$3 extra=$4 W=/tmp/srv-$1
  rm -rf $W; mkdir -p $W
  $S certs --out $W/certs > /dev/null
  local t0=$(date +%s.%N)
  timeout 150 $S dealer --program $prog --seq $seq $extra --count 1 --backend cuda --pool0 $W/pool0 --pool1 $W/pool1 > $W/dealer.out 2> $W/dealer.err
  echo "$name dealer rc=$? $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s: $(tail -c 300 $W/dealer.out)"
  local PORT=$((20000 + RANDOM % 20000))
  $S serve --party 0 --backend cuda --pool $W/pool0 --state $W/state0 --tls $W/certs/p0 --listen 127.0.0.1:$PORT --api 127.0.0.1:0 > $W/s0.out 2> $W/s0.err & local P0=$!
  $S serve --party 1 --backend cuda --pool $W/pool1 --state $W/state1 --tls $W/certs/p1 --connect 127.0.0.1:$PORT --api 127.0.0.1:0 > $W/s1.out 2> $W/s1.err & local P1=$!
  local A0="" A1=""
  for _ in $(seq 600); do A0=$(head -n1 $W/s0.out 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["api"])' 2>/dev/null); A1=$(head -n1 $W/s1.out 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["api"])' 2>/dev/null); [ -n "$A0" ] && [ -n "$A1" ] && break; sleep 0.1; done
  timeout 200 $S client --json --timeout 180 --p0 "$A0" --p1 "$A1" --certs $W/certs/client --text "$TEXT" > $O/client-$name.json 2> $W/client.err
  echo "$name client rc=$?"
  python3 -c "
import json; d=json.load(open('$O/client-$name.json'))
print({k:d.get(k) for k in ['matches_plain','latency_ms','online_ms','backend','device','rounds','comm_bytes']}, [{k:p.get(k) for k in ['party','backend','key_load_ms','prepare_ms','online_ms']} for p in d.get('per_party',[])])" 2>&1 | tail -1
  [ -s $O/client-$name.json ] || { tail -3 $W/client.err; tail -3 $W/s0.err; tail -3 $W/s1.err; tail -3 $W/dealer.err; }
  kill $P0 $P1 2>/dev/null; wait $P0 $P1 2>/dev/null
  rm -rf $W
}
export SUF_CACHE=/tmp/sufcache
mkdir -p $SUF_CACHE/minilm-l6 && cp .device/minilm-f16/* $SUF_CACHE/minilm-l6/ && cp .device/minilm-complete $SUF_CACHE/minilm-l6/.complete
{
serve_one bert-base bert-base 128
serve_one minilm minilm-l6 16 --bucket
} 2>&1 | tee $O/serve.log

