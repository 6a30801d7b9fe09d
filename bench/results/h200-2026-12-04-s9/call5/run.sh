#!/bin/bash
# Session 9, call 5: the final build (shared causal path): GPU backend tests, bert-tiny and gpt2
# bit-exact beside SIGMA.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
B=.device/bin
O=$OUT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $O/gpu.txt
$B/backends > $O/tests.log 2>&1; grep -E "test result|FAILED|panicked" $O/tests.log
summ() { python3 -c "import json,sys;d=json.load(open('$1'));print('$1'.split('/')[-1],round(d['online_ms'],1),[round(x,1) for x in d['online_ms_runs']],d['matches_plain'],d['rounds'],d['comm_bytes'],d['key_bytes'],round(d['keygen_ms']),[(round(p['host_ms'],1),round(p['device_ms'],1),round(p['wait_ms'],1)) for p in d['per_party']])" 2>&1 | tail -1; }
sg() { grep -o '"online_ms":[0-9.]*' $1 | tr '\n' ' '; echo; }
timeout 60 $B/suf bench model --model bert-tiny --seq 128 --mode private --backend cuda --processes 2 --runs 5 --json > $O/bert-tiny.json 2>> $O/errs.log
summ $O/bert-tiny.json
timeout 150 $B/suf bench model --model gpt2 --seq 128 --mode private --backend cuda --processes 2 --runs 3 --json > $O/gpt2.json 2>> $O/errs.log
summ $O/gpt2.json
timeout 60 bash .device/sigma/run-sigma.sh gpt2 1 > $O/sigma-gpt2.jsonl 2>> $O/errs.log; sg $O/sigma-gpt2.jsonl
