#!/usr/bin/env bash
# Stage 1 of egs/libritts: Kaldi data dirs ${datadir}/{train,dev,test} from a LibriTTS tree (normalised transcripts,
# reader ids as speakers, utt2dur, spk2gender), each validated. Run from the recipe directory (run.sh calls it).
# The logic is in python -m voxar.bin.prep_libritts.
set -euo pipefail

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

db=""
subsets=train-clean-100
dev_subsets=dev-clean
test_subsets=test-clean
datadir=data
min_dur=0.5
max_dur=20
max_utts=0
max_test_utts=0

usage="Usage: $0 --db DIR [--subsets A,B] [--dev_subsets A] [--test_subsets A] [--datadir DIR] [--min_dur S]
       [--max_dur S] [--max_utts N] [--max_test_utts N]"

. ./path.sh
. utils/parse_options.sh

log "LibriTTS ${db}: train=${subsets} dev=${dev_subsets} test=${test_subsets} -> ${datadir}"
python -m voxar.bin.prep_libritts --db "${db}" --out "${datadir}" --train-subsets "${subsets}" \
  --dev-subsets "${dev_subsets}" --test-subsets "${test_subsets}" --min-dur "${min_dur}" --max-dur "${max_dur}" \
  --max-utts "${max_utts}" --max-test-utts "${max_test_utts}" --no-progress
