#!/bin/sh
# Run every fuzz target for SECONDS (default 240) one after another, from the repository
# root, and print one summary line per target (executions, corpus, crashes). Needs nightly
# and cargo-fuzz (`cargo install cargo-fuzz`). Crashes land in fuzz/artifacts/TARGET/.
# A target that finds a crash keeps going (-fork=1 -ignore_crashes=1), so one known bug does
# not stop the rest of the run.
set -u
S=${1:-240}
cd "$(dirname "$0")/.." || exit 1
cargo +nightly fuzz build -s none || exit 1
for t in frames handshake safetensors gguf tokenizer model_config share_file manifest keystream gate_spec; do
  mkdir -p fuzz/corpus/$t fuzz/artifacts/$t
  log=fuzz/artifacts/$t.log
  cargo +nightly fuzz run -s none $t fuzz/corpus/$t fuzz/seeds/$t -- \
    -max_total_time=$S -fork=1 -ignore_crashes=1 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1
  execs=$(grep -a -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  [ -z "$execs" ] && execs=$(grep -a -o '#[0-9]*' "$log" | tail -1 | tr -d '#')
  crashes=$(ls fuzz/artifacts/$t | grep -c '^crash-')
  echo "$t: ${S}s, $execs executions, corpus $(ls fuzz/corpus/$t | wc -l), crashes $crashes"
done
