#!/usr/bin/env bash
# voxar synth recipe: an offline multi-speaker English corpus from Debian voices (espeak-ng, flite) with WORLD
# timbre transforms, then (in later versions of this recipe) features, vocoder, TTS and voice conversion.
#
# Run from this directory:  bash run.sh --size tiny --nj 2 --stop_stage 1
# Outputs (all git-ignored): data/{train,dev,test} Kaldi dirs, wav/ 16 kHz audio, exp/corpus_report.json.
# --datadir/--wavdir/--expdir put them elsewhere (tests use a temporary directory).
set -euo pipefail

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

# Defaults; each can be overridden as --name value (see utils/parse_options.sh).
stage=1            # first stage to run
stop_stage=100     # last stage to run
nj=2               # parallel synthesis processes
size=tiny          # tiny (~2.5 min, 8 speakers, CI) or full (~3.3 h, 78 speakers)
seed=0             # seed of sentences, speakers and prosody
layout=kaldi       # kaldi, or libritts to also write a LibriTTS-layout copy (24 kHz)
datadir=data       # Kaldi data dirs go to ${datadir}/{train,dev,test}
wavdir=wav         # 16 kHz wavs
expdir=exp         # reports and (later) models
libritts_dir=""    # LibriTTS tree for --layout libritts (default: ${datadir}/LibriTTS)
sim=true           # measure speaker similarity in the corpus report (resemblyzer)
max_utts_per_spk=8 # utterances per speaker for the similarity measurement

usage="Usage: $0 [options]
Builds the synthetic corpus (stage 1). Options (defaults in brackets):
  --stage N               first stage [${stage}]
  --stop_stage N          last stage [${stop_stage}]; only stage 1 (data) exists so far
  --nj N                  parallel synthesis processes [${nj}]
  --size tiny|full        corpus size [${size}]
  --seed N                random seed [${seed}]
  --layout kaldi|libritts also write the LibriTTS layout [${layout}]
  --datadir DIR           Kaldi data dirs [${datadir}]
  --wavdir DIR            16 kHz wavs [${wavdir}]
  --expdir DIR            reports [${expdir}]
  --libritts_dir DIR      LibriTTS tree [\${datadir}/LibriTTS]
  --sim true|false        speaker similarity in the report [${sim}]
  --max_utts_per_spk N    utterances per speaker for the similarity [${max_utts_per_spk}]"

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

# Stages that exist in this version of the recipe. Later stages (2: features, 3: vocoder, 4: TTS, 5: voice
# conversion) are added by later issues; asking for them fails here, before any work is done.
last_stage=1
for _v in stage stop_stage nj; do
  case "${!_v}" in
    '' | *[!0-9]*) echo "$0: --${_v} must be a non-negative integer, got '${!_v}'" >&2; exit 1 ;;
  esac
done
if [ "${stage}" -gt "${stop_stage}" ]; then
  echo "$0: --stage ${stage} is after --stop_stage ${stop_stage}: nothing to do" >&2
  exit 1
fi
if [ "${stop_stage}" -gt "${last_stage}" ]; then
  echo "$0: stages $((last_stage + 1))-${stop_stage} are not implemented yet (the last stage of this recipe is" \
    "${last_stage}: data). Rerun with --stop_stage ${last_stage}." >&2
  exit 1
fi
[ -n "${libritts_dir}" ] || libritts_dir="${datadir}/LibriTTS"

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

# ---------------------------------------------------------------------------------------------------------------
# Stage 2+ (features, vocoder, TTS, voice conversion) go here, each as
#   if [ "${stage}" -le N ] && [ "${stop_stage}" -ge N ]; then ...; fi
# with last_stage raised accordingly.
# ---------------------------------------------------------------------------------------------------------------

log "Successfully finished. [elapsed=${SECONDS}s]"
