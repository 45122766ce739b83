#!/usr/bin/env bash
# The README's main job. Until the embedded default TTS model lands, this is a smoke check of the CLI end to end:
# it speaks two sentences with espeak-ng into a Kaldi data dir, validates it, and dumps log-mel features.
# Outputs go to out/demo/.
set -euo pipefail
venv=${1:-.venv}
voxar="$venv/bin/voxar"
out=out/demo
rm -rf "$out" && mkdir -p "$out/wav" "$out/data"

"$voxar" --version
"$voxar" info

echo "== synthesising two utterances with espeak-ng" >&2
i=0
for text in "voxar speaks before the sentence is finished." "a live voice changer that runs from the microphone."; do
  i=$((i + 1))
  utt=demo-utt$i
  espeak-ng -v en-us -w "$out/wav/$utt.wav" "$text"
  echo "$utt $PWD/$out/wav/$utt.wav" >> "$out/data/wav.scp"
  echo "$utt $text" >> "$out/data/text"
  echo "$utt demo" >> "$out/data/utt2spk"
done

echo "== voxar data validate" >&2
"$voxar" data validate "$out/data"
"$voxar" data info "$out/data"
echo "== voxar data dump (16k log-mel)" >&2
"$voxar" data dump "$out/data" "$out/dump" --preset 16k --no-progress
ls -l "$out/dump"
echo "demo: OK (the embedded TTS model is not packaged yet; see README status)" >&2
