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
# The source is a flite voice: pocketsphinx transcribes it (rms: 1 word wrong of 9), so the VC row's WER says what
# the conversion keeps (an espeak-ng source scores ~89 % WER before any conversion). It is scored as its own row.
flite -voice rms -t "$text" -o "$out/source_flite.wav"
"$voxar" audio convert "$out/source_flite.wav" "$out/source.wav" --sr 16000
"$voxar" vc --source "$out/source.wav" --target "$voice" -o "$out/vc.wav" --threads 1

echo "== voxar eval (pocketsphinx WER, resemblyzer SIM to the bundled voice)" >&2
printf 'tts\t%s\t%s\t%s\tdefault\nvc\t%s\t%s\t%s\tdefault\n' "$PWD/$out/tts.wav" "$text" "$voice" \
  "$PWD/$out/vc.wav" "$text" "$voice" > "$out/list.tsv"
printf 'source\t%s\t%s\t%s\tdefault\n' "$PWD/$out/source.wav" "$text" "$voice" > "$out/source_list.tsv"
"$voxar" eval "$out/list.tsv" -o "$out/eval" --no-mcd --no-dnsmos --no-ceiling --plots 0 --no-progress
"$voxar" eval "$out/source_list.tsv" -o "$out/eval_source" --no-mcd --no-dnsmos --no-ceiling --plots 0 --no-progress \
  > "$out/eval_source.log" 2>&1 || { cat "$out/eval_source.log" >&2; exit 1; }
sed -n '1,9p' "$out/eval/eval.md"
echo "per utterance (source = the flite recording before conversion):"
"$venv/bin/python" - "$out" <<'PY'
import json, sys
for name in ("eval", "eval_source"):
    for line in open(f"{sys.argv[1]}/{name}/eval_utts.jsonl", encoding="utf-8"):
        u = json.loads(line)
        print(f"{u['utt']:>6}: WER {100 * u['wer']['wer']:5.1f} %  SIM {u.get('sim', float('nan')):.3f}  heard: {u['hyp']!r}")
PY
echo "demo: wrote $out/tts.wav and $out/vc.wav; scores in $out/eval/eval.md" >&2
