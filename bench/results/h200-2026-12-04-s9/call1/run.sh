#!/bin/bash
# Session 9, call 1: GPU tests; per-call gate overhead with the memory pool keeping freed
# memory (new default) and releasing it at every sync (SUF_CUDA_POOL_KEEP=0, the old driver
# default); bert-tiny both ways; single-process check; SIGMA bert-tiny.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
B=.device/bin
O=$OUT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $O/gpu.txt
$B/unit > $O/tests-unit.log 2>&1; grep -E "test result|FAILED" $O/tests-unit.log
$B/backends > $O/tests-backends.log 2>&1; grep -E "test result|FAILED" $O/tests-backends.log
$B/dealer > $O/tests-dealer.log 2>&1; grep -E "test result|FAILED" $O/tests-dealer.log
export SUF_GATE_TIMING=1 SUF_GATE_TIMING_CNT=1024,16384,262144
$B/backends gate_timing --nocapture > $O/gt-keep.log 2>&1
SUF_CUDA_POOL_KEEP=0 $B/backends gate_timing --nocapture > $O/gt-release.log 2>&1
( $B/backends gate_timing --nocapture > $O/gt-keep-2a.log 2>&1 & $B/backends gate_timing --nocapture > $O/gt-keep-2b.log 2>&1; wait )
grep "^gate_timing" $O/gt-keep.log | head -40; echo ---; grep "^gate_timing" $O/gt-release.log | head -40; echo ---; grep "^gate_timing" $O/gt-keep-2a.log | head -40
unset SUF_GATE_TIMING SUF_GATE_TIMING_CNT
summ() { python3 -c "import json,sys;d=json.load(open('$1'));print('$1'.split('/')[-1],round(d['online_ms'],1),[round(x,1) for x in d['online_ms_runs']],d['matches_plain'],[(round(p['host_ms'],1),round(p['device_ms'],1),round(p['wait_ms'],1)) for p in d['per_party']])" 2>&1 | tail -1; }
for v in keep release keep2 release2; do
  case $v in release*) export SUF_CUDA_POOL_KEEP=0;; *) unset SUF_CUDA_POOL_KEEP;; esac
  timeout 100 $B/suf bench model --model bert-tiny --seq 128 --mode private --backend cuda --processes 2 --runs 5 --json > $O/bert-tiny-$v.json 2> $O/bert-tiny-$v.err
  summ $O/bert-tiny-$v.json
done
unset SUF_CUDA_POOL_KEEP
timeout 60 bash .device/sigma/run-sigma.sh bert-tiny 5 > $O/sigma-bert-tiny.jsonl 2> $O/sigma-bert-tiny.err
grep -o '"online_ms":[0-9.]*' $O/sigma-bert-tiny.jsonl | head -6
timeout 60 $B/suf bench model --model bert-tiny --seq 128 --mode private --backend cuda --processes 1 --runs 2 --json > $O/bert-tiny-p1.json 2> $O/bert-tiny-p1.err
echo "p1 rc $?"; summ $O/bert-tiny-p1.json
timeout 150 $B/suf bench model --model bert-base --seq 128 --mode private --backend cuda --processes 2 --runs 2 --json > $O/bert-base-keep.json 2> $O/bert-base-keep.err
summ $O/bert-base-keep.json
