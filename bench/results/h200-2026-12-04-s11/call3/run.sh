#!/bin/bash
# Session 11, call 3: the gate calls' pinned I/O (one upload, one download per call). GPU tests
# of the new build; the gate_calls microbenchmark; A/B in one call: the build before the change
# (old) and after (new), bert-tiny (5 runs each) and bert-base (3 each); SIGMA beside them.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
P=.device/pack3; B=/tmp/b; mkdir -p $B
for f in suf unit backends dealer gate_calls; do gunzip -c $P/$f.gz > $B/$f; chmod +x $B/$f; done
gunzip -c .device/old/suf.gz > $B/suf-old; chmod +x $B/suf-old
O=$OUT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $O/gpu.txt
( $B/unit; $B/backends; $B/dealer ) > $O/tests.log 2>&1; grep -E "test result|FAILED|panicked|failed" $O/tests.log
timeout 150 $B/gate_calls --sizes 128,16384,262144 --json $O/gate_calls.json > $O/gate_calls.txt 2>&1; echo "gate_calls rc=$?"; tail -30 $O/gate_calls.txt
summ() { python3 -c "import json,sys;d=json.load(open('$1'));print('$1'.split('/')[-1],round(d['online_ms'],1),[round(x,1) for x in d['online_ms_runs']],d['matches_plain'],d['rounds'],'keygen',round(d['keygen_ms']),[(round(p['host_ms'],1),round(p['device_ms'],1),round(p['wait_ms'],1)) for p in d['per_party']], [(o['op'],round(o['device_ms'],1),o['device_calls']) for o in d['per_party'][0]['breakdown']['backend']['ops'] if o['device_calls']>0])" 2>&1 | tail -1; }
sg() { grep -o '"online_ms":[0-9.]*' $1 | tr '\n' ' '; grep -o '"keygen_ms":[0-9.]*' $1 | tr '\n' ' '; echo; }
mkdir -p /tmp/j
for v in old new; do
  S=$B/suf; [ $v = old ] && S=$B/suf-old
  timeout 60 $S bench model --model bert-tiny --seq 128 --mode private --backend cuda --processes 2 --runs 5 --json > /tmp/j/tiny-$v.json 2>> $O/errs.log
  echo -n "$v "; summ /tmp/j/tiny-$v.json
done
timeout 80 bash .device/sigma/run-sigma.sh bert-tiny 5 > /tmp/j/sigma-tiny.jsonl 2>> $O/errs.log; echo -n "sigma bert-tiny "; sg /tmp/j/sigma-tiny.jsonl
for v in new old; do
  S=$B/suf; [ $v = old ] && S=$B/suf-old
  timeout 150 $S bench model --model bert-base --seq 128 --mode private --backend cuda --processes 2 --runs 3 --json > /tmp/j/base-$v.json 2>> $O/errs.log
  echo -n "$v "; summ /tmp/j/base-$v.json
done
timeout 120 bash .device/sigma/run-sigma.sh bert-base 3 > /tmp/j/sigma-base.jsonl 2>> $O/errs.log; echo -n "sigma bert-base "; sg /tmp/j/sigma-base.jsonl
cd /tmp/j && tar czf $O/bench.tgz *.json *.jsonl
