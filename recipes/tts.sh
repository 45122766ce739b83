#!/usr/bin/env bash
# voxar's shared TTS recipe driver (the ESPnet egs2/TEMPLATE/tts1/tts.sh slot). A corpus recipe prepares Kaldi data
# dirs (stage 1, its local/data.sh), then calls this script from its own directory (egs/<corpus>/tts.sh links here):
#
#   ./tts.sh --preset vocos24k --train_set train --valid_set dev --test_sets test \
#       --vocoder_config conf/vocoder_tiny.yaml --tts_config conf/tts_tiny.yaml [--stage N] [--stop_stage M] ...
#
# Stages (numbered as in every voxar recipe; 5 and 6 belong to vc.sh):
#   2  features: log-mel dumps of every set           -> ${dumpdir}/<set>/
#   3  vocoder: train_vocoder on the train set          -> ${expdir}/<vocoder_tag>/model/
#      (or, with --vocos_dir, import the official Vocos mel-24khz checkpoint from that local directory)
#   4  TTS: train_tts on the train dump                 -> ${expdir}/<tts_tag>/model/
#   7  decode: decode_tts on each test set (--nj jobs)  -> ${expdir}/<tts_tag>/decode_<set>/{wav/,list.tsv}
#   8  evaluate: voxar eval of each decoded test set    -> ${expdir}/<tts_tag>/decode_<set>/eval/eval.{json,md}
#   9  pack: vocoder + TTS with model cards             -> ${expdir}/pack/{vocoder,tts}/
#
# Every stage is idempotent: it writes a .done marker holding its settings and is skipped on a rerun with the same
# settings (a changed setting, config or input model reruns it and the stages after it). Training always passes
# --resume, so rerunning an interrupted (even SIGKILLed) stage continues from the last checkpoint; each training dir
# gets a run.sh that reruns exactly its stage. Jobs run through ${train_cmd}/${cuda_cmd}/${decode_cmd} (cmd.sh) with
# logs next to their outputs. --ngpu K > 1 trains with torchrun --nproc_per_node K (DDP); --torchrun_opts passes
# multi-node flags (--nnodes, --node_rank, --rdzv_endpoint ...) through.
# Commands are built as strings and split on purpose (ESPnet style: ${train_cmd} ${python} ...).
# shellcheck disable=SC2086
set -euo pipefail

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}
cmdline="$(printf '%q ' "$0" "$@")"

# General
stage=2              # first stage to run
stop_stage=100       # last stage to run
nj=2                 # parallel jobs: feature-dump workers, decoding jobs
ngpu=0               # GPUs per node: 0 = CPU; 1 = one GPU; K > 1 = torchrun with K processes (DDP)
nproc=0              # training processes per node (0: ngpu when ngpu > 1, else 1; > 1 with ngpu 0: CPU DDP)
torchrun_opts=""     # more torchrun flags for multi-node runs, e.g. "--nnodes 2 --node_rank 0 --rdzv_endpoint h:29500"
threads=0            # torch threads per process (0: torch's default; 1 is fastest for tiny models on a small CPU)
python=python        # the Python that runs voxar
# Data
preset=16k           # mel preset of the feature dumps (16k or vocos24k); must match the configs
datadir=data         # Kaldi data dirs (stage 1 of the corpus recipe)
dumpdir=dump         # feature dumps
expdir=exp           # experiments
train_set=train      # training set
valid_set=dev        # validation set
test_sets="test"     # test sets to decode and evaluate (space-separated)
# Vocoder (stage 3)
vocoder_config=conf/vocoder_tiny.yaml # train_vocoder config
vocoder_tag=""       # experiment name (default: the config's basename, or vocoder_vocos with --vocos_dir)
vocoder_max_steps="" # override the config's max_steps
vocoder_args=""      # more train_vocoder arguments, e.g. "--override save_every=100 --batch-size 4"
vocos_dir=""         # import the official Vocos checkpoint (config.yaml + pytorch_model.bin) instead of training
# TTS (stage 4)
tts_config=conf/tts_tiny.yaml # train_tts config
tts_tag=""           # experiment name (default: the config's basename)
tts_max_steps=""     # override the config's max_steps
tts_args=""          # more train_tts arguments, e.g. "--override valid_every=500"
# Decoding (stage 7), evaluation (stage 8), packing (stage 9)
decode_args=""       # more decode_tts arguments, e.g. "--head mf --continuation"
decode_max_utts=0    # decode at most N utterances per test set (0: all)
prompt_sets=""       # sets prompts may also come from when a test speaker has one utterance (default: train_set)
eval_args=""         # more voxar eval arguments, e.g. "--no-mcd --no-dnsmos"
corpus=""            # training corpus in words, for the model cards

help_message="Usage: $0 [options]
Stages 2-4 and 7-9 of a voxar recipe (features, vocoder, TTS, decoding, evaluation, packing); run it from the
recipe directory after the corpus's data preparation. Options (defaults in brackets):
  --stage N / --stop_stage N        stages to run [${stage}/${stop_stage}]
  --nj N                            parallel jobs [${nj}]
  --ngpu K                          GPUs per node; K > 1 trains with torchrun --nproc_per_node K [${ngpu}]
  --nproc N                         training processes per node (0: from --ngpu) [${nproc}]
  --torchrun_opts \"...\"             extra torchrun flags for multi-node training [${torchrun_opts}]
  --threads N                       torch threads per process (0: default) [${threads}]
  --python PY                       Python interpreter [${python}]
  --preset 16k|vocos24k             mel preset of the dumps [${preset}]
  --datadir/--dumpdir/--expdir DIR  data, dump and experiment roots [${datadir}/${dumpdir}/${expdir}]
  --train_set/--valid_set SET       [${train_set}/${valid_set}]
  --test_sets \"SET ...\"             [${test_sets}]
  --vocoder_config FILE             [${vocoder_config}]
  --vocoder_tag/--vocoder_max_steps/--vocoder_args
  --vocos_dir DIR                   import the official Vocos files from DIR in stage 3 instead of training
  --tts_config FILE                 [${tts_config}]
  --tts_tag/--tts_max_steps/--tts_args
  --decode_args \"...\"               more decode_tts arguments [${decode_args}]
  --decode_max_utts N               utterances per test set, 0: all [${decode_max_utts}]
  --prompt_sets \"SET ...\"           extra prompt sources [\${train_set}]
  --eval_args \"...\"                 more voxar eval arguments [${eval_args}]
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
[ "${nj}" -ge 1 ] || { echo "$0: --nj must be >= 1" >&2; exit 1; }

if [ -z "${vocoder_tag}" ]; then
  if [ -n "${vocos_dir}" ]; then vocoder_tag=vocoder_vocos; else vocoder_tag="$(basename "${vocoder_config}" .yaml)"; fi
fi
[ -n "${tts_tag}" ] || tts_tag="$(basename "${tts_config}" .yaml)"
[ -n "${prompt_sets}" ] || prompt_sets="${train_set}"
vocoder_exp="${expdir}/${vocoder_tag}"
tts_exp="${expdir}/${tts_tag}"
setup_launcher

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
  log "Stage 2: features (${preset}) of ${train_set} ${valid_set} ${test_sets} -> ${dumpdir}"
  for dset in ${train_set} ${valid_set} ${test_sets}; do
    out="${dumpdir}/${dset}"
    if [ ! -f "${datadir}/${dset}/wav.scp" ]; then
      echo "$0: ${datadir}/${dset}/wav.scp not found: run the data stage (1) first" >&2
      exit 1
    fi
    sig="preset=${preset} data=$(cd "${datadir}/${dset}" && pwd)"
    sig+=" $(stamp "${datadir}/${dset}/wav.scp" "${datadir}/${dset}/text")"
    if is_done "${out}/.done" "${sig}"; then
      log "Stage 2: ${out} already done (${out}/.done)"
      continue
    fi
    resume=""
    [ ! -f "${out}/.done" ] || resume="--no-resume" # inputs or settings changed: recompute every shard
    rm -f "${out}/.done"
    mkdir -p "${out}"
    ${train_cmd} "${out}/dump.log" ${python} -m voxar.bin.dump_feats "${datadir}/${dset}" "${out}" \
      --preset "${preset}" --nj "${nj}" --no-progress ${resume}
    echo "${sig}" > "${out}/.done"
  done
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
  mkdir -p "${vocoder_exp}"
  if [ -n "${vocos_dir}" ]; then
    log "Stage 3: import the official Vocos checkpoint ${vocos_dir} -> ${vocoder_exp}/model"
    [ -d "${vocos_dir}" ] || { echo "$0: --vocos_dir ${vocos_dir}: directory not found" >&2; exit 1; }
    sig="vocos=$(cd "${vocos_dir}" && pwd) $(stamp "${vocos_dir}/config.yaml" "${vocos_dir}/pytorch_model.bin")"
    if is_done "${vocoder_exp}/.done" "${sig}"; then
      log "Stage 3: already done (${vocoder_exp}/.done)"
    else
      rm -f "${vocoder_exp}/.done"
      ${train_cmd} "${vocoder_exp}/import.log" ${python} -m voxar.bin.import_vocos --src "${vocos_dir}" \
        --out "${vocoder_exp}/model" --overwrite
      echo "${sig}" > "${vocoder_exp}/.done"
    fi
  else
    log "Stage 3: vocoder ${vocoder_config} on ${datadir}/${train_set} -> ${vocoder_exp}"
    opts="--device ${device} ${thread_opt} --no-progress"
    [ -z "${vocoder_max_steps}" ] || opts+=" --max-steps ${vocoder_max_steps}"
    cmd="${launcher} -m voxar.bin.train_vocoder --config ${vocoder_config} --data ${datadir}/${train_set}"
    cmd+=" --valid ${datadir}/${valid_set} --exp ${vocoder_exp} --resume ${opts} ${vocoder_args}"
    train 3 "the vocoder" "${vocoder_exp}" \
      "${cmd} config=$(config_hash "${vocoder_config}") $(stamp "${datadir}/${train_set}/wav.scp")" ${cmd}
  fi
  log "Stage 3: vocoder ready: ${vocoder_exp}/model"
fi

if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
  log "Stage 4: TTS ${tts_config} on ${dumpdir}/${train_set} -> ${tts_exp}"
  if grep -Eq '^[[:space:]]*pointer:[[:space:]]*true' "${tts_config}"; then
    # a text-pointer LM trains on forced phone alignments of its dumps (packaged content encoder)
    for dset in "${train_set}" "${valid_set}"; do
      sig="align_phones $(stamp "${dumpdir}/${dset}/.done")"
      if is_done "${dumpdir}/${dset}/.align.done" "${sig}"; then
        log "Stage 4: ${dumpdir}/${dset} phone alignments already done"
        continue
      fi
      log "Stage 4: phone alignments of ${dumpdir}/${dset}"
      ${train_cmd} "${dumpdir}/${dset}/align.log" ${python} -m voxar.bin.align_phones --dump "${dumpdir}/${dset}"
      echo "${sig}" > "${dumpdir}/${dset}/.align.done"
    done
  fi
  opts="--device ${device} ${thread_opt} --no-progress"
  [ -z "${tts_max_steps}" ] || opts+=" --max-steps ${tts_max_steps}"
  cmd="${launcher} -m voxar.bin.train_tts --config ${tts_config} --dump ${dumpdir}/${train_set}"
  cmd+=" --valid-dump ${dumpdir}/${valid_set} --exp ${tts_exp} --resume ${opts} ${tts_args}"
  train 4 "the TTS model" "${tts_exp}" \
    "${cmd} config=$(config_hash "${tts_config}") $(stamp "${dumpdir}/${train_set}/.done")" ${cmd}
  log "Stage 4: TTS model ready: ${tts_exp}/model"
fi

if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
  prompt_dirs=""
  for pset in ${prompt_sets}; do prompt_dirs+=" ${datadir}/${pset}"; done
  for dset in ${test_sets}; do
    ddir="${tts_exp}/decode_${dset}"
    log "Stage 7: decode ${datadir}/${dset} with ${tts_exp}/model (${nj} jobs) -> ${ddir}"
    decode="${python} -m voxar.bin.decode_tts --model ${tts_exp}/model --vocoder ${vocoder_exp}/model"
    decode+=" --data ${datadir}/${dset} --out ${ddir} --prompt-data${prompt_dirs} --max-utts ${decode_max_utts}"
    decode+=" --parts ${nj} --device ${device} --threads ${threads} --no-progress ${decode_args}"
    sig="${decode} $(stamp "${tts_exp}/model/model.safetensors" "${vocoder_exp}/model/model.safetensors")"
    sig+=" $(stamp "${datadir}/${dset}/text")"
    if is_done "${ddir}/.done" "${sig}"; then
      log "Stage 7: ${ddir} already done"
      continue
    fi
    rm -rf "${ddir}"
    mkdir -p "${ddir}/log"
    ${decode_cmd} --gpu "$((ngpu > 0 ? 1 : 0))" JOB=1:"${nj}" "${ddir}/log/decode.JOB.log" ${decode} --part JOB
    if [ "${nj}" -gt 1 ]; then # merge the parts' lists (sorted by utterance id)
      for name in list prompts; do
        { head -n 1 "${ddir}/${name}.1.tsv"; sed '/^#/d' "${ddir}/${name}".*.tsv | sort; } > "${ddir}/${name}.tsv"
      done
    fi
    echo "${sig}" > "${ddir}/.done"
    log "Stage 7: $(sed '/^#/d' "${ddir}/list.tsv" | wc -l) utterance(s) in ${ddir}/list.tsv"
  done
fi

if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
  for dset in ${test_sets}; do
    ddir="${tts_exp}/decode_${dset}"
    log "Stage 8: voxar eval of ${ddir}/list.tsv -> ${ddir}/eval"
    sig="eval ${eval_args} $(stamp "${ddir}/list.tsv")"
    if is_done "${ddir}/eval/.done" "${sig}"; then
      log "Stage 8: ${ddir}/eval already done"
    else
      rm -rf "${ddir}/eval"
      ${decode_cmd} "${ddir}/log/eval.log" ${python} -m voxar eval "${ddir}/list.tsv" -o "${ddir}/eval" \
        --no-progress ${eval_args}
      echo "${sig}" > "${ddir}/eval/.done"
    fi
    show_eval "${ddir}/eval"
  done
fi

if [ "${stage}" -le 9 ] && [ "${stop_stage}" -ge 9 ]; then
  log "Stage 9: pack ${vocoder_exp} and ${tts_exp} -> ${expdir}/pack/{vocoder,tts}"
  first_test="${test_sets%% *}"
  eval_json="${tts_exp}/decode_${first_test}/eval/eval.json"
  eval_opt=""
  [ ! -f "${eval_json}" ] || eval_opt="--eval tts=${eval_json}"
  sig="pack ${eval_opt} corpus=${corpus} $(stamp "${eval_json}")"
  sig+=" $(stamp "${vocoder_exp}/model/model.safetensors" "${tts_exp}/model/model.safetensors")"
  if is_done "${expdir}/pack/.tts.done" "${sig}"; then
    log "Stage 9: already done (${expdir}/pack/.tts.done)"
  else
    rm -f "${expdir}/pack/.tts.done"
    ${train_cmd} "${expdir}/pack/log/pack_tts.log" ${python} -m voxar.bin.pack_models --out "${expdir}/pack" \
      --model "vocoder=${vocoder_exp}" --model "tts=${tts_exp}" ${eval_opt} --data "vocoder=${datadir}/${train_set}" \
      --data "tts=${dumpdir}/${train_set}" --corpus "${corpus}" --recipe "egs/$(basename "$(pwd)")"
    echo "${sig}" > "${expdir}/pack/.tts.done"
  fi
  log "Stage 9: ${expdir}/pack/vocoder and ${expdir}/pack/tts (README.md model cards)"
fi

log "tts.sh: successfully finished stages ${stage}-${stop_stage}. [elapsed=${SECONDS}s]"
