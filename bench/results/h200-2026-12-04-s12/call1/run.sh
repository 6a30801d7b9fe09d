#!/bin/bash
# Session 12, call 1: GPU tests of the eleventh session's final commit (edf8fc4); gpt2 from
# `suf run --backend cuda` (one process); bert-tiny bench beside SIGMA; the disks for bert-large.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
P=.device/pack7; B=/tmp/b; mkdir -p $B
for f in suf unit backends dealer; do gunzip -c $P/$f.gz > $B/$f; chmod +x $B/$f; done
O=$OUT; S=$B/suf
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $O/gpu.txt
df -h / /tmp /dev/shm $O > $O/df.txt 2>&1; free -g >> $O/df.txt; cat $O/df.txt
T0=$(date +%s)
( $B/unit; $B/backends; $B/dealer ) > $O/tests.log 2>&1; grep -E "test result|FAILED|panicked|failed" $O/tests.log
echo "tests $(( $(date +%s) - T0 )) s"
TIMEV=""; [ -x /usr/bin/time ] && TIMEV="/usr/bin/time -v"
$TIMEV timeout 200 $S run --model gpt2 --seq 128 --mode private --backend cuda --text "secure inference on one gpu" --json > $O/run-gpt2.json 2> /tmp/rg.err
echo "gpt2 run rc=$? $(grep -E 'Elapsed|Maximum resident' /tmp/rg.err | tr '\n' ' ')"; tail -3 /tmp/rg.err
python3 -c "
import json; d=json.load(open('$O/run-gpt2.json')); print({k:d.get(k) for k in ['model','backend','matches_plain','max_abs_diff_secure_plain','online_ms','rounds','key_bytes','keygen_ms','cosine_secure_float']})" 2>&1 | tail -1
summ() { python3 -c "import json,sys;d=json.load(open('$1'));print('$1'.split('/')[-1],round(d['online_ms'],1),[round(x,1) for x in d['online_ms_runs']],d['matches_plain'],d['rounds'],'keygen',round(d['keygen_ms']),[(round(p['host_ms'],1),round(p['device_ms'],1),round(p['wait_ms'],1)) for p in d['per_party']])" 2>&1 | tail -1; }
timeout 60 $S bench model --model bert-tiny --seq 128 --mode private --backend cuda --processes 2 --runs 5 --json > $O/tiny.json 2>> $O/errs.log
summ $O/tiny.json
timeout 80 bash .device/sigma/run-sigma.sh bert-tiny 5 > $O/sigma-tiny.jsonl 2>> $O/errs.log; grep -o '"online_ms":[0-9.]*' $O/sigma-tiny.jsonl | tr '\n' ' '; echo
echo "total $(( $(date +%s) - T0 )) s"
