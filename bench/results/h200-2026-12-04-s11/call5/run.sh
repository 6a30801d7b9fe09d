#!/bin/bash
# Session 11, call 5 (final build): GPU tests; the deployed servers on bert-base with the key
# stream received from the pool file straight into device memory; gpt2 beside SIGMA; bert-large
# from `suf run` (one process) with this build.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
P=.device/pack5; B=/tmp/b; mkdir -p $B
for f in suf unit backends dealer; do gunzip -c $P/$f.gz > $B/$f; chmod +x $B/$f; done
O=$OUT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $O/gpu.txt
( $B/unit; $B/backends; $B/dealer ) > $O/tests.log 2>&1; grep -E "test result|FAILED|panicked|failed" $O/tests.log
S=$B/suf; TEXT="I loved every minute of it, the acting was superb!"
W=/tmp/srv; rm -rf $W; mkdir -p $W
$S certs --out $W/certs > /dev/null
timeout 150 $S dealer --program bert-base --seq 128 --count 1 --backend cuda --pool0 $W/pool0 --pool1 $W/pool1 > $W/dealer.out 2> $W/dealer.err; echo "dealer rc=$?"
PORT=$((20000 + RANDOM % 20000))
$S serve --party 0 --backend cuda --pool $W/pool0 --state $W/state0 --tls $W/certs/p0 --listen 127.0.0.1:$PORT --api 127.0.0.1:0 > $W/s0.out 2> $W/s0.err & P0=$!
$S serve --party 1 --backend cuda --pool $W/pool1 --state $W/state1 --tls $W/certs/p1 --connect 127.0.0.1:$PORT --api 127.0.0.1:0 > $W/s1.out 2> $W/s1.err & P1=$!
for _ in $(seq 600); do A0=$(head -n1 $W/s0.out 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["api"])' 2>/dev/null); A1=$(head -n1 $W/s1.out 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["api"])' 2>/dev/null); [ -n "$A0" ] && [ -n "$A1" ] && break; sleep 0.1; done
timeout 200 $S client --json --timeout 180 --p0 "$A0" --p1 "$A1" --certs $W/certs/client --text "$TEXT" > $O/client-bert-base.json 2> $W/client.err
echo "client rc=$?"
python3 -c "
import json; d=json.load(open('$O/client-bert-base.json'))
print({k:d.get(k) for k in ['matches_plain','latency_ms','online_ms','rounds']}, [{k:p.get(k) for k in ['key_load_ms','prepare_ms','online_ms']} for p in d.get('per_party',[])])" 2>&1 | tail -1
[ -s $O/client-bert-base.json ] || { tail -3 $W/client.err; tail -3 $W/s0.err; tail -3 $W/s1.err; }
kill $P0 $P1 2>/dev/null; wait $P0 $P1 2>/dev/null; rm -rf $W
summ() { python3 -c "import json,sys;d=json.load(open('$1'));print('$1'.split('/')[-1],round(d['online_ms'],1),[round(x,1) for x in d['online_ms_runs']],d['matches_plain'],d['rounds'],'keygen',round(d['keygen_ms']),[(round(p['host_ms'],1),round(p['device_ms'],1),round(p['wait_ms'],1)) for p in d['per_party']])" 2>&1 | tail -1; }
timeout 150 $S bench model --model gpt2 --seq 128 --mode private --backend cuda --processes 2 --runs 5 --json > $O/gpt2.json 2>> $O/errs.log
summ $O/gpt2.json
timeout 120 bash .device/sigma/run-sigma.sh gpt2 3 > $O/sigma-gpt2.jsonl 2>> $O/errs.log; grep -o '"online_ms":[0-9.]*' $O/sigma-gpt2.jsonl | tr '\n' ' '; echo
TIMEV=""; [ -x /usr/bin/time ] && TIMEV="/usr/bin/time -v"
$TIMEV timeout 200 $S run --model bert-large --seq 128 --mode private --backend cuda --text "secure inference on one gpu" --json > /tmp/rl.json 2> /tmp/rl.err
echo "bert-large run rc=$? $(grep -E 'Elapsed|Maximum resident' /tmp/rl.err | tr '\n' ' ')"
python3 -c "
import json; d=json.load(open('/tmp/rl.json')); print({k:d.get(k) for k in ['model','backend','matches_plain','max_abs_diff_secure_plain','online_ms','rounds','key_bytes','keygen_ms','cosine_secure_float']})" 2>&1 | tail -1 | tee $O/run-bert-large.txt
