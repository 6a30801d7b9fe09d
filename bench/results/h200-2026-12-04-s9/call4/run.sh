#!/bin/bash
# Session 9, call 4: broadcasts as gathers (no device call) + launch shapes + causal triangle;
# bert-tiny, bert-base, gpt2, each with SIGMA beside it.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
B=.device/bin
O=$OUT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $O/gpu.txt
summ() { python3 -c "import json,sys;d=json.load(open('$1'));print('$1'.split('/')[-1],round(d['online_ms'],1),[round(x,1) for x in d['online_ms_runs']],d['matches_plain'],d['rounds'],d['comm_bytes'],d['key_bytes'],round(d['keygen_ms']),[(round(p['host_ms'],1),round(p['device_ms'],1),round(p['wait_ms'],1)) for p in d['per_party']])" 2>&1 | tail -1; }
sg() { grep -o '"online_ms":[0-9.]*' $1 | tr '\n' ' '; echo; }
timeout 100 $B/suf bench model --model bert-tiny --seq 128 --mode private --backend cuda --processes 2 --runs 5 --json > $O/bert-tiny.json 2>> $O/errs.log
summ $O/bert-tiny.json
timeout 60 bash .device/sigma/run-sigma.sh bert-tiny 5 > $O/sigma-bert-tiny.jsonl 2>> $O/errs.log; sg $O/sigma-bert-tiny.jsonl
timeout 200 $B/suf bench model --model bert-base --seq 128 --mode private --backend cuda --processes 2 --runs 3 --json > $O/bert-base.json 2>> $O/errs.log
summ $O/bert-base.json
timeout 90 bash .device/sigma/run-sigma.sh bert-base 1 > $O/sigma-bert-base.jsonl 2>> $O/errs.log; sg $O/sigma-bert-base.jsonl
timeout 170 $B/suf bench model --model gpt2 --seq 128 --mode private --backend cuda --processes 2 --runs 3 --json > $O/gpt2.json 2>> $O/errs.log
summ $O/gpt2.json
timeout 90 bash .device/sigma/run-sigma.sh gpt2 1 > $O/sigma-gpt2.jsonl 2>> $O/errs.log; sg $O/sigma-gpt2.jsonl
