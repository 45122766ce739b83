#!/usr/bin/env bash
# The CUDA checks of voxar as ONE prepared run on a lent GPU machine (the `device` tool), sized for its 15-minute
# budget: the CUDA tests, then `voxar bench tts/vocoder/vc --device cuda` (dynamic, static and CUDA-graph LM
# decoding; continuous batching with many streams). Results go to $OUT (two files: a log and a tarball of JSON).
#
# The device image has PyTorch but not voxar's small pure-Python/audio dependencies, and no network: prepare them
# here with `make gpu-wheels` (a few MB in .whl/, git-ignored), then call the device tool with
#   command: bash scripts/gpu_check.sh      carry: [".whl"]      timeout_s: 540
# Each step has its own time limit and a failing step does not stop the others; the log says what ran.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out/gpu}
work=/tmp/voxar_gpu
mkdir -p "$out" "$work/json"
log="$out/gpu_check.log"
exec > >(tee "$log") 2>&1
py=${PYTHON:-python3}

step() {  # step SECONDS NAME CMD...: run with a time limit, log the outcome, never abort the script
  local limit=$1 name=$2 t0 rc
  shift 2
  echo "== $name ($(date -u +%H:%M:%S))"
  t0=$(date +%s)
  timeout "$limit" "$@"
  rc=$?
  echo "== $name: exit $rc after $(($(date +%s) - t0)) s"
}

if [ ! -d .whl ]; then
  echo "gpu_check: .whl/ is missing: run 'make gpu-wheels' here and carry .whl" >&2
  exit 1
fi
step 120 "install carried wheels" "$py" -m pip install -q --no-index --no-deps --target "$work/deps" .whl/*.whl
export PYTHONPATH="$work/deps:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'

step 150 "CUDA tests" "$py" -m pytest -q -p no:cacheprovider -k "cuda" tests/test_static_decode.py \
  tests/test_features.py tests/test_runtime.py
bench() {  # bench NAME ARGS...: voxar bench ... -o $work/json/NAME.json
  local name=$1
  shift
  step 90 "bench $name" "$py" -m voxar bench "$@" -o "$work/json/$name.json"
}
tts=voxar/assets/models/tts
voc=voxar/assets/models/vocoder
for decode in dynamic static cuda-graph; do
  bench "tts_default_mf1_$decode" tts --device cuda --model "$tts" --vocoder "$voc" --steps 1 --decode "$decode" \
    --repeats 10 --seconds 4
done
bench tts_small_mf2_cuda-graph tts --device cuda --size small --decode cuda-graph --repeats 10 --seconds 4
bench tts_small_mf2_autocast-bf16 tts --device cuda --size small --decode cuda-graph --autocast bf16 --repeats 10 \
  --seconds 4
bench tts_default_streams64 tts --device cuda --model "$tts" --vocoder "$voc" --steps 1 --streams 64 --seconds 2 \
  --rounds 1
bench tts_default_streams256 tts --device cuda --model "$tts" --vocoder "$voc" --steps 1 --streams 256 --seconds 2 \
  --rounds 1
bench vocoder_default vocoder --device cuda --model "$voc" --chunks 1,4,16 --seconds 5
bench vc_default vc --device cuda --model voxar/assets/models/vc --content-model voxar/assets/models/content \
  --vocoder "$voc" --seconds 10
tar czf "$out/gpu_results.tgz" -C "$work" json
ls -la "$work/json"
echo "gpu_check: done; JSON in $out/gpu_results.tgz"
