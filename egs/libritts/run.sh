#!/usr/bin/env bash
# voxar LibriTTS recipe: zero-shot TTS and voice conversion on LibriTTS (or LibriTTS-R) at 24 kHz (vocos24k preset).
#
#   bash run.sh --db /data/LibriTTS [--subsets train-clean-100,train-clean-360] [--size small] [--ngpu 1] [--nj 8]
#   bash run.sh --db /data/LibriTTS --stage 4 --stop_stage 4     # (re)run one stage; training resumes
#
# Stages (0-1 here, 2-4 and 7-9 in tts.sh, 5-9 in vc.sh, both linked from ../../recipes):
#   0 check the corpus            1 Kaldi data dirs (local/data.sh)   2 features to dump/
#   3 vocoder (or --vocos_dir)    4 TTS LM                            5 content encoder
#   6 VC model                    7 decode the test sets              8 voxar eval report
#   9 pack model dirs with model cards under exp/pack/
# Every stage is idempotent (.done markers) and resumable; every size knob is a flag, so CI runs the whole recipe on
# a LibriTTS-shaped tiny corpus:
#   bash ../synth/run.sh --size tiny --layout libritts --stop_stage 1
#   bash run.sh --db ../synth/data/LibriTTS --size tiny --ngpu 0 --threads 1 --vocoder_max_steps 20 ...
set -euo pipefail

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

# Defaults; each can be overridden as --name value (see utils/parse_options.sh).
stage=0                   # first stage to run
stop_stage=9              # last stage to run
db=""                     # LibriTTS root (holding train-clean-100/, dev-clean/, test-clean/, ...)
subsets=train-clean-100   # training subsets, comma-separated (e.g. train-clean-100,train-clean-360,train-other-500)
dev_subsets=dev-clean     # validation subsets
test_subsets=test-clean   # test subsets (decoded and evaluated)
min_dur=0.5               # shortest utterance kept (seconds)
max_dur=20                # longest utterance kept (seconds)
max_utts=0                # at most N train and dev utterances (0: all), taken round-robin over speakers
max_test_utts=200         # at most N test utterances (0: all), taken round-robin over speakers
nj=4                      # parallel jobs (feature dumps, decoding)
ngpu=1                    # GPUs per node: 0 = CPU; K > 1 = torchrun --nproc_per_node K (DDP)
nproc=0                   # training processes per node (0: from ngpu; > 1 with ngpu 0: CPU DDP)
torchrun_opts=""          # multi-node torchrun flags, e.g. "--nnodes 2 --node_rank 0 --rdzv_endpoint host:29500"
threads=0                 # torch threads per process (0: torch's default)
python=python             # the Python that runs voxar
datadir=data              # Kaldi data dirs
dumpdir=dump              # feature dumps
expdir=exp                # experiments and packed models
size=small                # config size: conf/{vocoder,tts,content,vc}_${size}.yaml (tiny: CI)
vocoder_config=""         # default: conf/vocoder_${size}.yaml
tts_config=""             # default: conf/tts_${size}.yaml
content_config=""         # default: conf/content_${size}.yaml
vc_config=""              # default: conf/vc_${size}.yaml
vocos_dir=""              # stage 3 imports the official Vocos mel-24khz files from this local dir instead of training
vocoder_max_steps=""      # override max_steps of each model (empty: the config's)
tts_max_steps=""
content_max_steps=""
vc_max_steps=""
vocoder_args=""           # more arguments of each training entry point, e.g. "--override save_every=1000"
tts_args=""
content_args=""
vc_args=""
decode_args=""            # more decode_tts arguments (e.g. "--head mf")
vc_decode_args=""         # more decode_vc arguments
decode_max_utts=0         # decode (TTS) / convert (VC) at most N utterances per test set (0: all)
eval_args=""              # more voxar eval arguments (e.g. "--no-mcd")
vc=true                   # run the voice-conversion stages (5, 6 and VC decoding/evaluation/packing)
vc_eval_source=true       # also evaluate the unconverted VC sources against the same targets (the SIM baseline)

usage="Usage: $0 --db /path/to/LibriTTS [options]
Options (defaults in brackets):
  --stage N / --stop_stage N       stages to run, 0-9 [${stage}/${stop_stage}]
  --db DIR                         LibriTTS root [required]
  --subsets A,B                    training subsets [${subsets}]
  --dev_subsets / --test_subsets   [${dev_subsets} / ${test_subsets}]
  --min_dur / --max_dur S          utterance length range [${min_dur} / ${max_dur}]
  --max_utts N / --max_test_utts N size limits, 0: all [${max_utts} / ${max_test_utts}]
  --nj N                           parallel jobs [${nj}]
  --ngpu K                         GPUs per node; K > 1: torchrun DDP [${ngpu}]
  --nproc N                        training processes per node (0: from --ngpu) [${nproc}]
  --torchrun_opts \"...\"            multi-node torchrun flags
  --threads N                      torch threads per process [${threads}]
  --datadir/--dumpdir/--expdir     [${datadir}/${dumpdir}/${expdir}]
  --size tiny|small                config size [${size}]
  --{vocoder,tts,content,vc}_config FILE      configs [conf/<model>_\${size}.yaml]
  --{vocoder,tts,content,vc}_max_steps N      step limits [config]
  --{vocoder,tts,content,vc}_args \"...\"       more training arguments
  --vocos_dir DIR                  import the official Vocos checkpoint in stage 3
  --decode_args / --vc_decode_args / --eval_args \"...\"
  --decode_max_utts N              test utterances decoded per set, 0: all [${decode_max_utts}]
  --vc true|false                  voice-conversion stages [${vc}]
  --vc_eval_source true|false      also evaluate the unconverted VC sources (baseline) [${vc_eval_source}]"

# The recipe runs in its own directory (as Kaldi/ESPnet recipes do), wherever it is called from; relative paths
# given as options are relative to this directory.
cd "$(dirname "${BASH_SOURCE[0]}")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then
  echo "$0: unexpected arguments: $*" >&2
  printf '%s\n' "${usage}" >&2
  exit 1
fi
last_stage=9
for _v in stage stop_stage nj ngpu nproc threads max_utts max_test_utts decode_max_utts; do
  case "${!_v}" in
    '' | *[!0-9]*) echo "$0: --${_v} must be a non-negative integer, got '${!_v}'" >&2; exit 1 ;;
  esac
done
if [ "${stage}" -gt "${stop_stage}" ]; then
  echo "$0: --stage ${stage} is after --stop_stage ${stop_stage}: nothing to do" >&2
  exit 1
fi
if [ "${stop_stage}" -gt "${last_stage}" ]; then
  echo "$0: --stop_stage ${stop_stage}: this recipe's stages are 0-${last_stage}" >&2
  exit 1
fi
[ -n "${vocoder_config}" ] || vocoder_config="conf/vocoder_${size}.yaml"
[ -n "${tts_config}" ] || tts_config="conf/tts_${size}.yaml"
[ -n "${content_config}" ] || content_config="conf/content_${size}.yaml"
[ -n "${vc_config}" ] || vc_config="conf/vc_${size}.yaml"
configs="${vocoder_config} ${tts_config}"
[ "${vc}" = false ] || configs+=" ${content_config} ${vc_config}"
for _c in ${configs}; do
  [ -f "${_c}" ] || { echo "$0: config ${_c} not found (--size ${size})" >&2; exit 1; }
done
vocoder_tag="$(basename "${vocoder_config}" .yaml)"
[ -z "${vocos_dir}" ] || vocoder_tag=vocoder_vocos
tts_tag="$(basename "${tts_config}" .yaml)"
corpus="LibriTTS ${subsets} ($(cd "${db:-.}" 2>/dev/null && pwd || echo "${db}"))"

if [ "${stage}" -le 0 ] && [ "${stop_stage}" -ge 0 ]; then
  log "Stage 0: check the corpus: ${db:-<no --db given>} (${subsets}; ${dev_subsets}; ${test_subsets})"
  ${python} -m voxar.bin.prep_libritts --check --db "${db}" --train-subsets "${subsets}" \
    --dev-subsets "${dev_subsets}" --test-subsets "${test_subsets}"
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
  log "Stage 1: Kaldi data dirs from ${db} -> ${datadir}/{train,dev,test}"
  marker="${datadir}/.stage1.done"
  signature="db=$(cd "${db}" 2>/dev/null && pwd || echo "${db}") subsets=${subsets} dev=${dev_subsets}"
  signature+=" test=${test_subsets} dur=${min_dur}-${max_dur} max_utts=${max_utts} max_test_utts=${max_test_utts}"
  if [ -f "${marker}" ] && [ "$(cat "${marker}")" = "${signature}" ]; then
    log "Stage 1: already done (${marker}); delete it to rebuild"
  else
    rm -f "${marker}"
    local/data.sh --db "${db}" --subsets "${subsets}" --dev_subsets "${dev_subsets}" --test_subsets "${test_subsets}" \
      --datadir "${datadir}" --min_dur "${min_dur}" --max_dur "${max_dur}" --max_utts "${max_utts}" \
      --max_test_utts "${max_test_utts}"
    echo "${signature}" > "${marker}"
  fi
fi

common=(--nj "${nj}" --ngpu "${ngpu}" --nproc "${nproc}" --torchrun_opts "${torchrun_opts}" --threads "${threads}"
  --python "${python}" --preset vocos24k --datadir "${datadir}" --dumpdir "${dumpdir}" --expdir "${expdir}"
  --train_set train --valid_set dev --test_sets test --eval_args "${eval_args}" --corpus "${corpus}")

if [ "${stop_stage}" -ge 2 ]; then
  ./tts.sh "${common[@]}" --stage "$((stage > 2 ? stage : 2))" --stop_stage "${stop_stage}" \
    --vocoder_config "${vocoder_config}" --vocoder_tag "${vocoder_tag}" --vocoder_max_steps "${vocoder_max_steps}" \
    --vocoder_args "${vocoder_args}" --vocos_dir "${vocos_dir}" --tts_config "${tts_config}" --tts_tag "${tts_tag}" \
    --tts_max_steps "${tts_max_steps}" --tts_args "${tts_args}" --decode_args "${decode_args}" \
    --decode_max_utts "${decode_max_utts}"
fi

if [ "${vc}" = true ] && [ "${stop_stage}" -ge 5 ]; then
  ./vc.sh "${common[@]}" --stage "$((stage > 5 ? stage : 5))" --stop_stage "${stop_stage}" \
    --vocoder_exp "${expdir}/${vocoder_tag}" --tts_exp "${expdir}/${tts_tag}" \
    --content_config "${content_config}" --content_max_steps "${content_max_steps}" --content_args "${content_args}" \
    --vc_config "${vc_config}" --vc_max_steps "${vc_max_steps}" --vc_args "${vc_args}" \
    --decode_args "${vc_decode_args}" --decode_max_utts "${decode_max_utts}" --eval_source "${vc_eval_source}"
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
