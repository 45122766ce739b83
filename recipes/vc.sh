#!/usr/bin/env bash
# voxar's shared voice-conversion recipe driver. A corpus recipe calls it from its own directory
# (egs/<corpus>/vc.sh links here) after tts.sh has made the feature dumps (stage 2) and the vocoder (stage 3):
#
#   ./vc.sh --vocoder_exp exp/vocoder_tiny --content_config conf/content_tiny.yaml --vc_config conf/vc_tiny.yaml \
#       [--stage N] [--stop_stage M] ...
#
# Stages (numbered as in every voxar recipe; 2-4 belong to tts.sh):
#   5  content encoder: train_content on the train dump   -> ${expdir}/<content_tag>/model/
#      (and its phone error rate on the first test set    -> ${expdir}/<content_tag>/per_<set>.json)
#   6  VC model: train_vc on the train dump               -> ${expdir}/<vc_tag>/model/
#   7  decode: decode_vc on each test set (each utterance converted to another test speaker's voice)
#                                                         -> ${expdir}/<vc_tag>/decode_<set>/{wav/,list.tsv}
#   8  evaluate: voxar eval of each converted test set    -> ${expdir}/<vc_tag>/decode_<set>/eval/eval.{json,md}
#      and of the unconverted sources against the same targets (the SIM baseline) -> .../decode_<set>/eval_source/
#   9  pack: content encoder + VC model (and the vocoder, its card with the VC and TTS figures)
#                                                         -> ${expdir}/pack/{content,vc,vocoder}/
#
# Markers, resuming, job runners and --ngpu/--torchrun_opts work as in tts.sh.
# Commands are built as strings and split on purpose (ESPnet style: ${train_cmd} ${python} ...).
# shellcheck disable=SC2086
set -euo pipefail

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}
cmdline="$(printf '%q ' "$0" "$@")"

# General
stage=5              # first stage to run
stop_stage=100       # last stage to run
nj=2                 # parallel jobs (kept for the common interface with tts.sh)
ngpu=0               # GPUs per node: 0 = CPU; 1 = one GPU; K > 1 = torchrun with K processes (DDP)
nproc=0              # training processes per node (0: ngpu when ngpu > 1, else 1; > 1 with ngpu 0: CPU DDP)
torchrun_opts=""     # more torchrun flags for multi-node runs
threads=0            # torch threads per process (0: torch's default)
python=python        # the Python that runs voxar
# Data
preset=16k           # mel preset of the feature dumps (informational here; the dumps come from tts.sh stage 2)
datadir=data         # Kaldi data dirs
dumpdir=dump         # feature dumps
expdir=exp           # experiments
train_set=train      # training set
valid_set=dev        # validation set
test_sets="test"     # test sets to convert and evaluate (space-separated)
# Models
vocoder_exp=""       # the vocoder experiment of tts.sh stage 3 (its model/ is used for decoding) [required for 7, 9]
tts_exp=""           # the TTS experiment, whose evaluation also goes on the vocoder's model card (optional)
content_config=conf/content_tiny.yaml # train_content config
content_tag=""       # experiment name (default: the config's basename)
content_max_steps="" # override the config's max_steps
content_args=""      # more train_content arguments
vc_config=conf/vc_tiny.yaml # train_vc config
vc_tag=""            # experiment name (default: the config's basename)
vc_max_steps=""      # override the config's max_steps
vc_args=""           # more train_vc arguments
decode_args=""       # more decode_vc arguments
decode_max_utts=0    # convert at most N utterances per test set (0: all)
eval_args=""         # more voxar eval arguments
eval_source=true     # also evaluate the unconverted sources against the same targets (the SIM baseline)
corpus=""            # training corpus in words, for the model cards

help_message="Usage: $0 --vocoder_exp DIR [options]
Stages 5-9 of a voxar recipe (content encoder, VC model, conversion of the test sets, evaluation, packing); run it
from the recipe directory after tts.sh stages 2-3. Options (defaults in brackets):
  --stage N / --stop_stage N        stages to run [${stage}/${stop_stage}]
  --ngpu K / --nproc N / --torchrun_opts \"...\" / --threads N / --python PY   as in tts.sh
  --datadir/--dumpdir/--expdir DIR  [${datadir}/${dumpdir}/${expdir}]
  --train_set/--valid_set SET       [${train_set}/${valid_set}]
  --test_sets \"SET ...\"             [${test_sets}]
  --vocoder_exp DIR                 vocoder experiment (DIR/model is used) [required]
  --tts_exp DIR                     TTS experiment, for the vocoder's model card
  --content_config FILE             [${content_config}]
  --content_tag/--content_max_steps/--content_args
  --vc_config FILE                  [${vc_config}]
  --vc_tag/--vc_max_steps/--vc_args
  --decode_args \"...\" / --eval_args \"...\"
  --decode_max_utts N               utterances per test set, 0: all [${decode_max_utts}]
  --eval_source true|false          also evaluate the unconverted sources (baseline) [${eval_source}]
  --corpus TEXT                     training corpus, for the model cards"

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then
  echo "$0: unexpected arguments: $*" >&2
  printf '%s\n' "${help_message}" >&2
  exit 2
fi
. utils/stages.sh
check_uint stage stop_stage nj ngpu nproc threads decode_max_utts

[ -n "${content_tag}" ] || content_tag="$(basename "${content_config}" .yaml)"
[ -n "${vc_tag}" ] || vc_tag="$(basename "${vc_config}" .yaml)"
content_exp="${expdir}/${content_tag}"
vc_exp="${expdir}/${vc_tag}"
if [ "${stop_stage}" -ge 7 ] && [ "${stage}" -le 9 ] && [ -z "${vocoder_exp}" ]; then
  echo "$0: stages 7-9 need --vocoder_exp (the vocoder experiment of tts.sh stage 3)" >&2
  exit 1
fi
setup_launcher

if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
  log "Stage 5: content encoder ${content_config} on ${dumpdir}/${train_set} -> ${content_exp}"
  opts="--device ${device} ${thread_opt} --no-progress"
  [ -z "${content_max_steps}" ] || opts+=" --max-steps ${content_max_steps}"
  cmd="${launcher} -m voxar.bin.train_content --config ${content_config} --dump ${dumpdir}/${train_set}"
  cmd+=" --valid-dump ${dumpdir}/${valid_set} --test-dump ${dumpdir}/${test_sets%% *} --exp ${content_exp} --resume"
  cmd+=" ${opts} ${content_args}"
  train 5 "the content encoder" "${content_exp}" \
    "${cmd} config=$(config_hash "${content_config}") $(stamp "${dumpdir}/${train_set}/.done")" ${cmd}
  log "Stage 5: content encoder ready: ${content_exp}/model"
fi

if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
  log "Stage 6: VC model ${vc_config} on ${dumpdir}/${train_set} -> ${vc_exp}"
  opts="--device ${device} ${thread_opt} --no-progress"
  [ -z "${vc_max_steps}" ] || opts+=" --max-steps ${vc_max_steps}"
  cmd="${launcher} -m voxar.bin.train_vc --config ${vc_config} --dump ${dumpdir}/${train_set}"
  cmd+=" --valid-dump ${dumpdir}/${valid_set} --content-model ${content_exp}/model --exp ${vc_exp} --resume"
  cmd+=" ${opts} ${vc_args}"
  sig="${cmd} config=$(config_hash "${vc_config}")"
  sig+=" $(stamp "${dumpdir}/${train_set}/.done" "${content_exp}/model/model.safetensors")"
  train 6 "the VC model" "${vc_exp}" "${sig}" ${cmd}
  log "Stage 6: VC model ready: ${vc_exp}/model"
fi

if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
  for dset in ${test_sets}; do
    ddir="${vc_exp}/decode_${dset}"
    log "Stage 7: convert ${datadir}/${dset} with ${vc_exp}/model -> ${ddir}"
    decode="${python} -m voxar.bin.decode_vc --vc-model ${vc_exp}/model --content-model ${content_exp}/model"
    decode+=" --vocoder ${vocoder_exp}/model --data ${datadir}/${dset} --out ${ddir} --max-utts ${decode_max_utts}"
    decode+=" --device ${device} ${thread_opt} ${decode_args}"
    sig="${decode} $(stamp "${vc_exp}/model/model.safetensors" "${content_exp}/model/model.safetensors")"
    sig+=" $(stamp "${vocoder_exp}/model/model.safetensors" "${datadir}/${dset}/text")"
    if is_done "${ddir}/.done" "${sig}"; then
      log "Stage 7: ${ddir} already done"
      continue
    fi
    rm -rf "${ddir}"
    mkdir -p "${ddir}/log"
    ${decode_cmd} --gpu "$((ngpu > 0 ? 1 : 0))" "${ddir}/log/decode.log" ${decode}
    echo "${sig}" > "${ddir}/.done"
    log "Stage 7: $(sed '/^#/d' "${ddir}/list.tsv" | wc -l) utterance(s) in ${ddir}/list.tsv"
  done
fi

if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
  lists="list"
  [ "${eval_source}" = false ] || lists+=" source_list"
  for dset in ${test_sets}; do
    ddir="${vc_exp}/decode_${dset}"
    for name in ${lists}; do
      edir="${ddir}/eval"
      [ "${name}" = list ] || edir="${ddir}/eval_source"
      log "Stage 8: voxar eval of ${ddir}/${name}.tsv -> ${edir}"
      sig="eval ${eval_args} $(stamp "${ddir}/${name}.tsv")"
      if is_done "${edir}/.done" "${sig}"; then
        log "Stage 8: ${edir} already done"
      else
        rm -rf "${edir}"
        ${decode_cmd} "${ddir}/log/$(basename "${edir}").log" ${python} -m voxar eval "${ddir}/${name}.tsv" \
          -o "${edir}" --no-progress ${eval_args}
        echo "${sig}" > "${edir}/.done"
      fi
      show_eval "${edir}"
    done
  done
fi

if [ "${stage}" -le 9 ] && [ "${stop_stage}" -ge 9 ]; then
  log "Stage 9: pack ${content_exp}, ${vc_exp} and ${vocoder_exp} -> ${expdir}/pack/{content,vc,vocoder}"
  first_test="${test_sets%% *}"
  evals=()
  json="${vc_exp}/decode_${first_test}/eval/eval.json"
  [ ! -f "${json}" ] || evals+=(--eval "vc=${json}")
  json="${vc_exp}/decode_${first_test}/eval_source/eval.json"
  [ ! -f "${json}" ] || evals+=(--eval "vc_source=${json}")
  json="${tts_exp}/decode_${first_test}/eval/eval.json"
  [ -z "${tts_exp}" ] || [ ! -f "${json}" ] || evals+=(--eval "tts=${json}")
  sig="pack ${evals[*]} corpus=${corpus} $(stamp "${vocoder_exp}/model/model.safetensors")"
  sig+=" $(stamp "${content_exp}/model/model.safetensors" "${vc_exp}/model/model.safetensors")"
  if is_done "${expdir}/pack/.vc.done" "${sig}"; then
    log "Stage 9: already done (${expdir}/pack/.vc.done)"
  else
    rm -f "${expdir}/pack/.vc.done"
    ${train_cmd} "${expdir}/pack/log/pack_vc.log" ${python} -m voxar.bin.pack_models --out "${expdir}/pack" \
      --model "content=${content_exp}" --model "vc=${vc_exp}" --model "vocoder=${vocoder_exp}" "${evals[@]}" \
      --data "content=${dumpdir}/${train_set}" --data "vc=${dumpdir}/${train_set}" \
      --data "vocoder=${datadir}/${train_set}" --corpus "${corpus}" --recipe "egs/$(basename "$(pwd)")"
    echo "${sig}" > "${expdir}/pack/.vc.done"
  fi
  log "Stage 9: ${expdir}/pack/{content,vc,vocoder} (README.md model cards)"
fi

log "vc.sh: successfully finished stages ${stage}-${stop_stage}. [elapsed=${SECONDS}s]"
