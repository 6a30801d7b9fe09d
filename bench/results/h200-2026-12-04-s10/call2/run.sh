#!/bin/bash
# Session 10, call 2: gpt2 (5 runs) beside SIGMA (3), call 1's build.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
B=.device/bin
O=$OUT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $O/gpu.txt
summ() { python3 -c "import json,sys;d=json.load(open('$1'));print('$1'.split('/')[-1],round(d['online_ms'],1),[round(x,1) for x in d['online_ms_runs']],d['matches_plain'],d['rounds'],d['comm_bytes'],d['key_bytes'],round(d['keygen_ms']),d['keygen_phases_ms'],[(round(p['host_ms'],1),round(p['device_ms'],1),round(p['wait_ms'],1),round(p['key_receive_ms']),p['key_receive_split_ms_last']) for p in d['per_party']])" 2>&1 | tail -1; }
sg() { grep -o '"online_ms":[0-9.]*' $1 | tr '\n' ' '; grep -o '"keygen_ms":[0-9.]*' $1 | tr '\n' ' '; echo; }
timeout 260 $B/suf bench model --model gpt2 --seq 128 --mode private --backend cuda --processes 2 --runs 5 --json > $O/gpt2.json 2>> $O/errs.log
summ $O/gpt2.json
timeout 150 bash .device/sigma/run-sigma.sh gpt2 3 > $O/sigma-gpt2.jsonl 2>> $O/errs.log; sg $O/sigma-gpt2.jsonl
