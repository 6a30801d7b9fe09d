#!/bin/bash
# Session 11, call 1: GPU tests of this build, then `suf run --backend cuda` in one process
# (the dealer streaming both parties' keys while each receives into its device memory):
# bert-tiny, bert-base, bert-large.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
B=.device/bin
O=$OUT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $O/gpu.txt 2>&1
for t in unit backends dealer; do
  echo "== $t" >> $O/tests.log
  timeout 240 $B/$t --test-threads 1 >> $O/tests.log 2>&1; echo "rc=$?" >> $O/tests.log
done
grep -E "^test result|rc=|FAILED|panicked" $O/tests.log | head -20
( while true; do echo "$(date +%T) host_used_gb=$(free -g | awk '/Mem:/{print $3}') gpu_used_mib=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits)"; sleep 3; done ) > $O/mem.log 2>&1 &
MON=$!
summ() { python3 -c "
import json,sys
d=json.load(open('$1'))
print('$1'.split('/')[-1], {k:d.get(k) for k in ['model','backend','device','seq','matches_plain','max_abs_diff_secure_plain','online_ms','rounds','comm_bytes','key_bytes','keygen_ms','cosine_secure_float','cosine_plain_float']})" 2>&1 | tail -1; }
TIMEV=""; [ -x /usr/bin/time ] && TIMEV="/usr/bin/time -v"
for m in bert-tiny bert-base bert-large; do
  lim=120; [ $m = bert-large ] && lim=330
  $TIMEV timeout $lim $B/suf run --model $m --seq 128 --mode private --backend cuda --text "secure inference on one gpu" --json > $O/run-$m.json 2> $O/run-$m.err
  echo "$m rc=$? $(grep -E 'Elapsed|Maximum resident' $O/run-$m.err | tr '\n' ' ')"
  summ $O/run-$m.json
  [ -s $O/run-$m.json ] || tail -5 $O/run-$m.err
done 2>&1 | tee $O/runs.log
kill $MON
rm -f $O/run-*.err
