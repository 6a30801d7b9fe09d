#!/bin/bash
# Session 11, call 2: the deployed servers on the GPU (`suf dealer --backend cuda` → two
# `suf serve --pool --backend cuda` processes, TLS peer link on loopback → `suf client`), one
# request per model: bert-tiny, bert-base, gpt2 (seq 128, zoo weights), MiniLM-L6 (real
# weights in F16, a 16-token bucket); then `suf run` and `suf bench model` on MiniLM-L6.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
mkdir -p .device/bin2 && gunzip -c .device/pack2/suf.gz > .device/bin2/suf && chmod +x .device/bin2/suf
tar -C .device -xzf .device/pack2/minilm.tgz
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
{
serve_one bert-tiny bert-tiny 128
serve_one bert-base bert-base 128
serve_one gpt2 gpt2 128
serve_one minilm .device/minilm-f16 16 --bucket
timeout 100 $S run --model .device/minilm-f16 --backend cuda --mode private --text "$TEXT" --json > $O/run-minilm.json 2> /tmp/run-minilm.err
echo "minilm run rc=$?"; python3 -c "
import json; d=json.load(open('$O/run-minilm.json')); print({k:d.get(k) for k in ['backend','device','seq','matches_plain','online_ms','rounds','cosine_secure_float']})" 2>&1 | tail -1
timeout 150 $S bench model --model .device/minilm-f16 --seq 128 --mode private --backend cuda --processes 2 --runs 3 --json > $O/bench-minilm.json 2> /tmp/bench-minilm.err
echo "minilm bench rc=$?"; python3 -c "
import json; d=json.load(open('$O/bench-minilm.json')); print({k:d.get(k) for k in ['backend','seq','matches_plain','online_ms','online_ms_runs','rounds','key_bytes']})" 2>&1 | tail -1
} 2>&1 | tee $O/serve.log
