#!/usr/bin/env bash
# voxar synth recipe: an offline multi-speaker English corpus from Debian voices (espeak-ng, flite) with WORLD
# timbre transforms, then features, vocoder, TTS and voice conversion trained on it (16 kHz, 16k mel preset).
#
#   bash run.sh --size tiny --nj 2 --stop_stage 1      # the corpus only
#   bash run.sh --size tiny --ngpu 0 --threads 1       # everything, tiny models on a CPU
# Stages: 1 corpus (local/data.sh); 2 features; 3 vocoder; 4 TTS; 5 content encoder; 6 VC model; 7 decode the
# test set; 8 voxar eval report; 9 pack model dirs with model cards (2-4 and 7-9 in tts.sh, 5-9 in vc.sh, both
# linked from ../../recipes). Stages are idempotent (.done markers) and training resumes from its checkpoints.
# Outputs (all git-ignored): data/{train,dev,test} Kaldi dirs, wav/ 16 kHz audio, dump/ features, exp/ models,
# reports and exp/pack/. --datadir/--wavdir/--dumpdir/--expdir put them elsewhere (tests use a temporary directory).
set -euo pipefail

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

# Defaults; each can be overridden as --name value (see utils/parse_options.sh).
stage=1            # first stage to run
stop_stage=9       # last stage to run
nj=2               # parallel jobs: synthesis processes, feature-dump workers, decoding jobs
size=tiny          # tiny (~2.5 min, 8 speakers, CI), full (~3.3 h, 78 speakers) or large (full + ~5 h more train)
seed=0             # seed of sentences, speakers and prosody
layout=kaldi       # kaldi, or libritts to also write a LibriTTS-layout copy (24 kHz)
datadir=data       # Kaldi data dirs go to ${datadir}/{train,dev,test}
wavdir=wav         # 16 kHz wavs
expdir=exp         # reports and (later) models
libritts_dir=""    # LibriTTS tree for --layout libritts (default: ${datadir}/LibriTTS)
sim=true           # measure speaker similarity in the corpus report (resemblyzer)
max_utts_per_spk=8 # utterances per speaker for the similarity measurement
dumpdir=dump       # feature dumps (stage 2)
ngpu=0             # GPUs per node: 0 = CPU; K > 1 = torchrun --nproc_per_node K (DDP)
nproc=0            # training processes per node (0: from ngpu; > 1 with ngpu 0: CPU DDP)
torchrun_opts=""   # multi-node torchrun flags
threads=0          # torch threads per process (0: torch's default; 1 is fastest for tiny models on a small CPU)
python=python      # the Python that runs voxar
model_size=tiny    # config size: conf/{vocoder,tts,content,vc}_${model_size}.yaml
vocoder_config=""  # default: conf/vocoder_${model_size}.yaml
tts_config=""      # default: conf/tts_${model_size}.yaml
content_config=""  # default: conf/content_${model_size}.yaml
vc_config=""       # default: conf/vc_${model_size}.yaml
vocoder_max_steps="" # override max_steps of each model (empty: the config's)
tts_max_steps=""
content_max_steps=""
vc_max_steps=""
vocoder_args=""    # more arguments of each training entry point
tts_args=""
content_args=""
vc_args=""
decode_args=""     # more decode_tts arguments (e.g. "--head mf")
vc_decode_args=""  # more decode_vc arguments
decode_max_utts=0  # decode (TTS) / convert (VC) at most N test utterances (0: all)
eval_args=""       # more voxar eval arguments (e.g. "--no-mcd")
vc=true            # run the voice-conversion stages
vc_eval_source=true # also evaluate the unconverted VC sources against the same targets (the SIM baseline)
install_default=false # after stage 9: install the packed models + a voice clip as voxar's embedded defaults
default_voice=flt-slt-a # speaker whose first training utterance becomes the bundled default voice

usage="Usage: $0 [options]
Builds the synthetic corpus (stage 1) and trains on it (stages 2-9). Options (defaults in brackets):
  --stage N               first stage [${stage}]
  --stop_stage N          last stage [${stop_stage}]; stages 1-9
  --nj N                  parallel jobs (synthesis, feature dumps, decoding) [${nj}]
  --size tiny|full|large  corpus size [${size}]
  --seed N                random seed [${seed}]
  --layout kaldi|libritts also write the LibriTTS layout [${layout}]
  --datadir DIR           Kaldi data dirs [${datadir}]
  --wavdir DIR            16 kHz wavs [${wavdir}]
  --expdir DIR            reports [${expdir}]
  --libritts_dir DIR      LibriTTS tree [\${datadir}/LibriTTS]
  --sim true|false        speaker similarity in the report [${sim}]
  --max_utts_per_spk N    utterances per speaker for the similarity [${max_utts_per_spk}]
  --dumpdir DIR           feature dumps [${dumpdir}]
  --ngpu K                GPUs per node; K > 1: torchrun DDP [${ngpu}]
  --nproc N               training processes per node (0: from --ngpu) [${nproc}]
  --torchrun_opts \"...\"   multi-node torchrun flags
  --threads N             torch threads per process [${threads}]
  --model_size tiny|small config size [${model_size}]
  --{vocoder,tts,content,vc}_config FILE      configs [conf/<model>_\${model_size}.yaml]
  --{vocoder,tts,content,vc}_max_steps N      step limits [config]
  --{vocoder,tts,content,vc}_args \"...\"       more training arguments
  --decode_args / --vc_decode_args / --eval_args \"...\"
  --decode_max_utts N     test utterances decoded, 0: all [${decode_max_utts}]
  --vc true|false         voice-conversion stages [${vc}]
  --vc_eval_source true|false  also evaluate the unconverted VC sources (baseline) [${vc_eval_source}]
  --install_default true|false  install the packed models as voxar's embedded defaults [${install_default}]
  --default_voice SPK     training speaker of the bundled default voice [${default_voice}]"

# The recipe runs in its own directory (as Kaldi/ESPnet recipes do), wherever it is called from; relative
# --datadir/--wavdir/--expdir paths are relative to this directory.
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
for _v in stage stop_stage nj ngpu nproc threads decode_max_utts; do
  case "${!_v}" in
    '' | *[!0-9]*) echo "$0: --${_v} must be a non-negative integer, got '${!_v}'" >&2; exit 1 ;;
  esac
done
if [ "${stage}" -gt "${stop_stage}" ]; then
  echo "$0: --stage ${stage} is after --stop_stage ${stop_stage}: nothing to do" >&2
  exit 1
fi
if [ "${stop_stage}" -gt "${last_stage}" ]; then
  echo "$0: --stop_stage ${stop_stage}: this recipe's stages are 1-${last_stage}" >&2
  exit 1
fi
[ -n "${libritts_dir}" ] || libritts_dir="${datadir}/LibriTTS"
[ -n "${vocoder_config}" ] || vocoder_config="conf/vocoder_${model_size}.yaml"
[ -n "${tts_config}" ] || tts_config="conf/tts_${model_size}.yaml"
[ -n "${content_config}" ] || content_config="conf/content_${model_size}.yaml"
[ -n "${vc_config}" ] || vc_config="conf/vc_${model_size}.yaml"
if [ "${stop_stage}" -ge 2 ]; then
  configs="${vocoder_config} ${tts_config}"
  [ "${vc}" = false ] || configs+=" ${content_config} ${vc_config}"
  for _c in ${configs}; do
    [ -f "${_c}" ] || { echo "$0: config ${_c} not found (--model_size ${model_size})" >&2; exit 1; }
  done
fi
vocoder_tag="$(basename "${vocoder_config}" .yaml)"
tts_tag="$(basename "${tts_config}" .yaml)"

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
  log "Stage 1: synthetic corpus (size=${size} seed=${seed} layout=${layout} nj=${nj})"
  marker="${datadir}/.stage1.done"
  # The marker records the settings it was made with: other settings rebuild (resuming the audio already made).
  signature="size=${size} seed=${seed} layout=${layout} wavdir=$(cd "$(dirname "${wavdir}")" 2>/dev/null && pwd)/$(basename "${wavdir}")"
  [ "${layout}" = libritts ] && signature="${signature} libritts_dir=${libritts_dir}"
  if [ -f "${marker}" ] && [ "$(cat "${marker}")" = "${signature}" ] && [ -f "${expdir}/corpus_report.json" ]; then
    log "Stage 1: already done (${marker}); delete it to rebuild"
  else
    rm -f "${marker}"
    local/data.sh --size "${size}" --seed "${seed}" --nj "${nj}" --layout "${layout}" --datadir "${datadir}" \
      --wavdir "${wavdir}" --expdir "${expdir}" --libritts_dir "${libritts_dir}" --sim "${sim}" \
      --max_utts_per_spk "${max_utts_per_spk}"
    echo "${signature}" > "${marker}"
  fi
  log "Stage 1: done: ${datadir}/{train,dev,test}, report ${expdir}/corpus_report.json"
fi

common=(--nj "${nj}" --ngpu "${ngpu}" --nproc "${nproc}" --torchrun_opts "${torchrun_opts}" --threads "${threads}"
  --python "${python}" --preset 16k --datadir "${datadir}" --dumpdir "${dumpdir}" --expdir "${expdir}"
  --train_set train --valid_set dev --test_sets test --eval_args "${eval_args}"
  --corpus "voxar synth corpus (size ${size}, seed ${seed})")

if [ "${stop_stage}" -ge 2 ]; then
  ./tts.sh "${common[@]}" --stage "$((stage > 2 ? stage : 2))" --stop_stage "${stop_stage}" \
    --vocoder_config "${vocoder_config}" --vocoder_tag "${vocoder_tag}" --vocoder_max_steps "${vocoder_max_steps}" \
    --vocoder_args "${vocoder_args}" --tts_config "${tts_config}" --tts_tag "${tts_tag}" \
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

if [ "${install_default}" = true ] && [ "${stop_stage}" -ge 9 ]; then
  # The package's embedded defaults (voxar/assets): the packed models (fp16, <= 30 MB) and a short clip of a
  # training speaker as the default voice of `voxar tts` without --prompt.
  voice_utt=$(awk -v s="${default_voice}" '$2 == s {print $1; exit}' "${datadir}/train/utt2spk")
  if [ -z "${voice_utt}" ]; then
    echo "$0: --default_voice ${default_voice}: no such speaker in ${datadir}/train" >&2
    exit 1
  fi
  voice_wav=$(awk -v u="${voice_utt}" '$1 == u {print $2; exit}' "${datadir}/train/wav.scp")
  log "Installing the packed models and ${voice_utt} as voxar's embedded defaults"
  ${python} -m voxar.bin.install_defaults --pack "${expdir}/pack" --voice "${voice_wav}"
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
