#!/bin/bash
# Session 12, call 2: bert-large behind the deployed servers on the GPU. The two pools
# (≈ 60 GB each) do not fit this host's 64 GiB disk together: party 0's pool is on the disk,
# party 1's in /dev/shm (RAM); both servers receive their key stream into device memory.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
P=.device/pack7; B=/tmp/b; mkdir -p $B
gunzip -c $P/suf.gz > $B/suf; chmod +x $B/suf
O=$OUT; S=$B/suf; T0=$(date +%s)
TEXT="I loved every minute of it, the acting was superb!"
W=/tmp/srv; rm -rf $W /dev/shm/pool1; mkdir -p $W
$S certs --out $W/certs > /dev/null
timeout 330 /usr/bin/time -v $S dealer --program bert-large --seq 128 --count 1 --backend cuda --pool0 $W/pool0 --pool1 /dev/shm/pool1 > $O/dealer.out 2> $W/dealer.err; echo "dealer rc=$? $(( $(date +%s) - T0 )) s $(grep -E 'Elapsed|Maximum resident' $W/dealer.err | tr '\n' ' ')"
grep -v "^\s" $W/dealer.err | tail -4; tail -c 600 $O/dealer.out; echo
du -sh $W/pool0 /dev/shm/pool1; df -h / /dev/shm | tail -2; free -g | head -2
PORT=$((20000 + RANDOM % 20000))
$S serve --party 0 --backend cuda --pool $W/pool0 --state $W/state0 --tls $W/certs/p0 --listen 127.0.0.1:$PORT --api 127.0.0.1:0 > $W/s0.out 2> $W/s0.err & P0=$!
$S serve --party 1 --backend cuda --pool /dev/shm/pool1 --state $W/state1 --tls $W/certs/p1 --connect 127.0.0.1:$PORT --api 127.0.0.1:0 > $W/s1.out 2> $W/s1.err & P1=$!
for _ in $(seq 900); do A0=$(head -n1 $W/s0.out 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["api"])' 2>/dev/null); A1=$(head -n1 $W/s1.out 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["api"])' 2>/dev/null); [ -n "$A0" ] && [ -n "$A1" ] && break; sleep 0.1; done
echo "servers up $(( $(date +%s) - T0 )) s"
timeout 400 $S client --json --timeout 380 --p0 "$A0" --p1 "$A1" --certs $W/certs/client --text "$TEXT" > $O/client-bert-large.json 2> $W/client.err
echo "client rc=$? $(( $(date +%s) - T0 )) s"
python3 -c "
import json; d=json.load(open('$O/client-bert-large.json'))
print({k:d.get(k) for k in ['matches_plain','latency_ms','online_ms','rounds']}, [{k:p.get(k) for k in ['key_load_ms','prepare_ms','online_ms']} for p in d.get('per_party',[])])" 2>&1 | tail -1
[ -s $O/client-bert-large.json ] || { tail -3 $W/client.err; tail -3 $W/s0.err; tail -3 $W/s1.err; }
nvidia-smi --query-gpu=memory.used --format=csv,noheader
kill $P0 $P1 2>/dev/null; wait $P0 $P1 2>/dev/null
tail -c 1500 $W/s0.err > $O/s0.err; tail -c 1500 $W/s1.err > $O/s1.err
rm -rf $W /dev/shm/pool1
echo "total $(( $(date +%s) - T0 )) s"
