#!/bin/bash
# Session 9, call 3: FSS kernels' launch shape by batch size (fss_block). GPU tests; gate timing
# over launch shapes; bert-tiny and bert-base with the automatic shape, SIGMA beside them.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
B=.device/bin
O=$OUT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $O/gpu.txt
( $B/unit; $B/backends; $B/dealer ) > $O/tests.log 2>&1; grep -E "test result|FAILED|panicked" $O/tests.log
SUF_GATE_TIMING=1 SUF_GATE_TIMING_CNT=1024,4096,16384,65536,262144 SUF_GATE_TIMING_SHAPES=auto,256r32,256t4,128t4,64t4,32t4,128r32,64r32 $B/backends gate_timing --nocapture > $O/gt.log 2>&1
grep -c "^gate_timing" $O/gt.log; grep -E "FAILED|panicked|differ" $O/gt.log | head -5
summ() { python3 -c "import json,sys;d=json.load(open('$1'));print('$1'.split('/')[-1],round(d['online_ms'],1),[round(x,1) for x in d['online_ms_runs']],d['matches_plain'],[(round(p['host_ms'],1),round(p['device_ms'],1),round(p['wait_ms'],1)) for p in d['per_party']])" 2>&1 | tail -1; }
timeout 100 $B/suf bench model --model bert-tiny --seq 128 --mode private --backend cuda --processes 2 --runs 5 --json > $O/bert-tiny.json 2>> $O/errs.log
summ $O/bert-tiny.json
timeout 60 bash .device/sigma/run-sigma.sh bert-tiny 5 > $O/sigma-bert-tiny.jsonl 2>> $O/errs.log
grep -o '"online_ms":[0-9.]*' $O/sigma-bert-tiny.jsonl | tr '\n' ' '; echo
timeout 200 $B/suf bench model --model bert-base --seq 128 --mode private --backend cuda --processes 2 --runs 3 --json > $O/bert-base.json 2>> $O/errs.log
summ $O/bert-base.json
timeout 90 bash .device/sigma/run-sigma.sh bert-base 1 > $O/sigma-bert-base.jsonl 2>> $O/errs.log
grep -o '"online_ms":[0-9.]*' $O/sigma-bert-base.jsonl | tr '\n' ' '; echo
grep "^gate_timing" $O/gt.log | awk '{print $2, $4, $6, $7, $9}' | sort | awk '{k=$1" p"$2" "$3; a[k]=a[k]" "$4"="$5} END{for(k in a) print k, a[k]}' | sort -k1,1 -k3,3n
