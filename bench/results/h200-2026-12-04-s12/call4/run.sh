#!/bin/bash
# Session 12, call 4: the byte-permute T-table AES. GPU tests of the new build; the kernel
# benchmarks (cuda_bench: AES rate, DPF/DCF throughput; gate_calls); bert-tiny and bert-base,
# the build before the change (old) and after (new) alternated in one call, SIGMA beside them.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
P=.device/pack8; B=/tmp/b; mkdir -p $B
for f in suf sufold unit backends dealer gate_calls cuda_bench; do gunzip -c $P/$f.gz > $B/$f; chmod +x $B/$f; done
O=$OUT; T0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $O/gpu.txt
( $B/unit; $B/backends; $B/dealer ) > $O/tests.log 2>&1; grep -E "test result|FAILED|panicked|failed" $O/tests.log
echo "tests $(( $(date +%s) - T0 )) s"
SUF_BENCH_RUNS=5 timeout 120 $B/cuda_bench > $O/cuda_bench.json 2> $O/cuda_bench.log; echo "cuda_bench rc=$?"; python3 -c "
import json; d=json.load(open('$O/cuda_bench.json')); print({k:v for k,v in d.items() if not isinstance(v,(dict,list))})" 2>&1 | tail -2
timeout 100 $B/gate_calls --sizes 128,262144 --json $O/gate_calls.json > $O/gate_calls.txt 2>&1; echo "gate_calls rc=$?"; tail -28 $O/gate_calls.txt
echo "kernels $(( $(date +%s) - T0 )) s"
summ() { python3 -c "import json,sys;d=json.load(open('$1'));print('$1'.split('/')[-1],round(d['online_ms'],1),[round(x,1) for x in d['online_ms_runs']],d['matches_plain'],d['rounds'],'keygen',round(d['keygen_ms']),[(round(p['host_ms'],1),round(p['device_ms'],1),round(p['wait_ms'],1)) for p in d['per_party']], [(o['op'],round(o['device_ms'],1)) for o in d['per_party'][0]['breakdown']['backend']['ops'] if o['device_calls']>0])" 2>&1 | tail -1; }
mkdir -p /tmp/j
for v in old new; do
  S=$B/suf; [ $v = old ] && S=$B/sufold
  timeout 60 $S bench model --model bert-tiny --seq 128 --mode private --backend cuda --processes 2 --runs 5 --json > /tmp/j/tiny-$v.json 2>> $O/errs.log
  echo -n "$v "; summ /tmp/j/tiny-$v.json
done
timeout 80 bash .device/sigma/run-sigma.sh bert-tiny 5 > /tmp/j/sigma-tiny.jsonl 2>> $O/errs.log; echo -n "sigma bert-tiny "; grep -o '"online_ms":[0-9.]*' /tmp/j/sigma-tiny.jsonl | tr '\n' ' '; echo
for v in new old; do
  [ $(( $(date +%s) - T0 )) -gt 400 ] && { echo "skip bert-base $v (time)"; continue; }
  S=$B/suf; [ $v = old ] && S=$B/sufold
  timeout 150 $S bench model --model bert-base --seq 128 --mode private --backend cuda --processes 2 --runs 3 --json > /tmp/j/base-$v.json 2>> $O/errs.log
  echo -n "$v "; summ /tmp/j/base-$v.json
done
[ $(( $(date +%s) - T0 )) -lt 480 ] && timeout 110 bash .device/sigma/run-sigma.sh bert-base 3 > /tmp/j/sigma-base.jsonl 2>> $O/errs.log; echo -n "sigma bert-base "; grep -o '"online_ms":[0-9.]*' /tmp/j/sigma-base.jsonl | tr '\n' ' '; echo
cd /tmp/j && tar czf $O/bench.tgz *.json *.jsonl
echo "total $(( $(date +%s) - T0 )) s"
