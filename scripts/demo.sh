#!/usr/bin/env bash
# The README's main job, offline: speak a sentence in the bundled voice with the embedded default models (streaming,
# first-audio latency printed), convert a recording to that voice with the streaming VC pipeline, and score the
# speech with the offline evaluators (pocketsphinx WER, resemblyzer SIM). Outputs go to out/demo/.
set -euo pipefail
venv=${1:-.venv}
voxar="$venv/bin/voxar"
out=out/demo
text="The quick brown fox jumps over the lazy dog."
rm -rf "$out" && mkdir -p "$out"

"$voxar" --version
assets=$("$venv/bin/python" -c 'import voxar, pathlib; print(pathlib.Path(voxar.__file__).parent / "assets")')
for kind in tts vocoder content vc; do
  if [ ! -f "$assets/models/$kind/model.safetensors" ]; then
    echo "demo: the embedded $kind model is missing ($assets/models/$kind); train and install it with" \
      "bash egs/synth/run.sh --size full --model_size base --install_default true" >&2
    exit 1
  fi
done
voice="$assets/voices/default.wav"

echo "== voxar tts (embedded model, bundled voice, streaming)" >&2
echo "$text" | "$voxar" -v tts --stream --threads 1 -o "$out/tts.wav"   # text on stdin: spoken as it arrives

echo "== voxar vc (a recording converted to the bundled voice)" >&2
espeak-ng -v en-us+m3 -w "$out/source_22k.wav" "$text"
"$voxar" audio convert "$out/source_22k.wav" "$out/source.wav" --sr 16000
"$voxar" vc --source "$out/source.wav" --target "$voice" -o "$out/vc.wav" --threads 1

echo "== voxar eval (pocketsphinx WER, resemblyzer SIM to the bundled voice)" >&2
printf 'tts\t%s\t%s\t%s\tdefault\nvc\t%s\t%s\t%s\tdefault\n' "$PWD/$out/tts.wav" "$text" "$voice" \
  "$PWD/$out/vc.wav" "$text" "$voice" > "$out/list.tsv"
"$voxar" eval "$out/list.tsv" -o "$out/eval" --no-mcd --no-dnsmos --no-ceiling --plots 0 --no-progress
cat "$out/eval/eval.md" | sed -n '1,12p'
echo "demo: wrote $out/tts.wav and $out/vc.wav; scores in $out/eval/eval.md" >&2
