#!/bin/bash
# Session 10, call 4: no rayon under the GPU dealer's locks (the window-32 hang), 4 MiB key
# socket buffers. GPU tests; the GPU dealer to tmpfs at windows 8, 32, 1024; gpt2 (5) and
# bert-base (3, window 32) with the bench's dealer.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
B=.device/bin
O=$OUT
cat /proc/sys/net/core/wmem_max /proc/sys/net/core/rmem_max > $O/sysctl.txt
( $B/backends; $B/dealer ) > $O/tests.log 2>&1; grep -E "test result|FAILED|panicked|failed" $O/tests.log
for w in 8 32 1024; do
  ( time SUF_DEALER_WINDOW=$w timeout 60 $B/suf keygen --backend cuda --program bert-base --seq 128 --out /dev/shm/kb ) > $O/keygen-w$w.log 2>&1
  echo "window $w"; grep -E "keygen: [0-9.]+ GB|dealing split|real|user|sys" $O/keygen-w$w.log; rm -rf /dev/shm/kb
done
summ() { python3 -c "import json,sys;d=json.load(open('$1'));print('$1'.split('/')[-1],round(d['online_ms'],1),[round(x,1) for x in d['online_ms_runs']],d['matches_plain'],d['rounds'],d['comm_bytes'],d['key_bytes'],'keygen',round(d['keygen_ms']),[round(x) for x in d['key_load_ms_runs']],d['keygen_phases_ms'],[(round(p['host_ms'],1),round(p['device_ms'],1),round(p['wait_ms'],1),round(p['key_receive_ms']),p['key_receive_split_ms_last']) for p in d['per_party']])" 2>&1 | tail -1; }
timeout 200 $B/suf bench model --model gpt2 --seq 128 --mode private --backend cuda --processes 2 --runs 5 --json > $O/gpt2.json 2>> $O/errs.log
summ $O/gpt2.json
SUF_DEALER_WINDOW=32 timeout 120 $B/suf bench model --model bert-base --seq 128 --mode private --backend cuda --processes 2 --runs 3 --json > $O/bert-base-w32.json 2>> $O/errs.log
summ $O/bert-base-w32.json
