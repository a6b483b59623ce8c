#!/usr/bin/env bash
# Distributed training on tf.distribute: the 12AX LSTM demo as two local worker processes
# (distributed = {"strategy": "multi_worker"}, the cluster in TF_CONFIG), all files under
# out/distributed-12ax/ of the current directory. Each step's batch is split over the two workers by
# sequences and the gradients are all-reduced; the result equals one process on the same batches (see
# docs/distributed.rst). Only the chief (worker 0) writes the checkpoints and the learning-rate file; each
# worker logs to its own file.
#
# Run from anywhere (the repository root is found from this script): bash demos/distributed-12ax.sh [EPOCHS]
# Measured (2 CPU cores, TF CPU, both workers on the same two cores): with 5 epochs the dev frame error is 0
# (one process on the same batches: 0.06%; the runs agree up to the order of float sums), 7 s. On one small
# machine this shows the mechanics, not a speed-up.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
epochs="${1:-5}"
out=out/distributed-12ax
mkdir -p "$out"
printf '#!rnn.py\ndistributed = {"strategy": "multi_worker"}\n' > "$out/distributed.config"
ports=$(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("localhost", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')
read -r port0 port1 <<< "$ports"
cluster="\"cluster\": {\"worker\": [\"localhost:$port0\", \"localhost:$port1\"]}"
pids=()
for index in 0 1; do
  TF_CONFIG="{$cluster, \"task\": {\"type\": \"worker\", \"index\": $index}}" PYTHONPATH="$root" \
    python3 "$root/rnn.py" "$root/demos/demo-tf-lstm.12ax.config" "$out/distributed.config" \
    ++model "$out/model" ++learning_rate_file "$out/learning_rates" ++num_epochs "$epochs" \
    ++log "$out/worker$index.log" ++log_verbosity 3 > "$out/worker$index.out" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
grep "^epoch" "$out/worker0.out" || true
exit $status
