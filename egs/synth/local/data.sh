#!/usr/bin/env bash
# Stage 1 of egs/synth: synthesise the corpus, validate the Kaldi dirs, write the corpus report.
# Run from the recipe directory (run.sh calls it); options as in run.sh.
set -euo pipefail

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

size=tiny
seed=0
nj=2
layout=kaldi
datadir=data
wavdir=wav
expdir=exp
libritts_dir=""
sim=true
max_utts_per_spk=8

usage="Usage: $0 [--size tiny|full|large] [--seed N] [--nj N] [--layout kaldi|libritts] [--datadir DIR] [--wavdir DIR]
       [--expdir DIR] [--libritts_dir DIR] [--sim true|false] [--max_utts_per_spk N]"

. ./path.sh
. utils/parse_options.sh

[ -n "${libritts_dir}" ] || libritts_dir="${datadir}/LibriTTS"
mkdir -p "${datadir}" "${wavdir}" "${expdir}"

log "synthesising: size=${size} seed=${seed} nj=${nj} layout=${layout} -> ${datadir}, ${wavdir}"
python -m voxar.bin.synth_corpus --size "${size}" --seed "${seed}" --nj "${nj}" --layout "${layout}" \
  --data-dir "${datadir}" --wav-dir "${wavdir}" --libritts-dir "${libritts_dir}" --report ""

for split in train dev test; do
  log "validating ${datadir}/${split}"
  python -m voxar data validate "${datadir}/${split}"
done

sim_flag=""
[ "${sim}" = true ] || sim_flag="--no-sim"
log "corpus report -> ${expdir}/corpus_report.json"
# shellcheck disable=SC2086
python -m voxar.bin.synth_corpus --report-only --data-dir "${datadir}" --report "${expdir}/corpus_report.json" \
  --max-utts-per-spk "${max_utts_per_spk}" ${sim_flag}
