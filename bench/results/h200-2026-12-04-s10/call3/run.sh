#!/bin/bash
# Session 10, call 3: the dealer writing keys into their blob slots (GPU downloads into place,
# pooled buffers) + the two-thread receive. GPU tests; the GPU dealer to tmpfs (windows 8, 32);
# bert-base (5) and bert-tiny (5) beside SIGMA (3 / 5).
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
B=.device/bin
O=$OUT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $O/gpu.txt
( $B/unit; $B/backends; $B/dealer ) > $O/tests.log 2>&1; grep -E "test result|FAILED|panicked|failed" $O/tests.log
for w in 8 32; do
  ( time SUF_DEALER_WINDOW=$w timeout 90 $B/suf keygen --backend cuda --program bert-base --seq 128 --out /dev/shm/kb ) > $O/keygen-w$w.log 2>&1
  grep -E "keygen: [0-9.]+ GB|dealing split|real|user|sys" $O/keygen-w$w.log; rm -rf /dev/shm/kb
done
summ() { python3 -c "import json,sys;d=json.load(open('$1'));print('$1'.split('/')[-1],round(d['online_ms'],1),[round(x,1) for x in d['online_ms_runs']],d['matches_plain'],d['rounds'],d['comm_bytes'],d['key_bytes'],'keygen',round(d['keygen_ms']),[round(x) for x in d['key_load_ms_runs']],d['keygen_phases_ms'],[(round(p['host_ms'],1),round(p['device_ms'],1),round(p['wait_ms'],1),round(p['key_receive_ms']),p['key_receive_split_ms_last']) for p in d['per_party']])" 2>&1 | tail -1; }
sg() { grep -o '"online_ms":[0-9.]*' $1 | tr '\n' ' '; grep -o '"keygen_ms":[0-9.]*' $1 | tr '\n' ' '; echo; }
timeout 200 $B/suf bench model --model bert-base --seq 128 --mode private --backend cuda --processes 2 --runs 5 --json > $O/bert-base.json 2>> $O/errs.log
summ $O/bert-base.json
timeout 120 bash .device/sigma/run-sigma.sh bert-base 3 > $O/sigma-bert-base.jsonl 2>> $O/errs.log; sg $O/sigma-bert-base.jsonl
timeout 60 $B/suf bench model --model bert-tiny --seq 128 --mode private --backend cuda --processes 2 --runs 5 --json > $O/bert-tiny.json 2>> $O/errs.log
summ $O/bert-tiny.json
timeout 80 bash .device/sigma/run-sigma.sh bert-tiny 5 > $O/sigma-bert-tiny.jsonl 2>> $O/errs.log; sg $O/sigma-bert-tiny.jsonl
