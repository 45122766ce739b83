"""The speaker plan: a seeded list of synthetic speakers, each a base voice plus a fixed WORLD timbre transform.

A speaker is an engine voice (espeak-ng accent + variant, or a flite voice) with fixed speaking rate, pitch and
pitch range, followed by a fixed :class:`~voxar.corpus.timbre.Timbre` (F0 scale, vocal-tract-length warp, F0
range, breathiness). Everything a speaker says uses the same settings; only the speaking rate and the espeak pitch
move a little from utterance to utterance (:func:`utterance_voice`), as a person's do.

To make speakers distinct (the corpus target, measured with resemblyzer, is a mean across-speaker cosine <= 0.80
with a mean within-speaker cosine >= 0.88), the plan

- alternates nominal gender and draws a target median F0 per speaker (male 85-150 Hz, female 160-250 Hz) and a
  formant warp that depends on the base voice's gender (0.90-1.06 within a gender, 1.08-1.18 male -> female,
  0.84-0.93 female -> male), so F0 and vocal-tract length are spread widely but stay plausible;
- cycles through the base voices (espeak variants and flite voices, shuffled) and the accents, so neighbours in the
  plan rarely share a base; when a variant comes back (with another accent, or a flite voice again), its F0 scale
  and formant warp are chosen as far as possible from the earlier speakers made from it (best of 25 draws);
- keeps ``p_plain`` of the speakers untransformed (espeak ones then get their pitch from ``-p``; each base voice
  is used plain at most once), which keeps some of the cleanest audio in the corpus.

Speaker ids are short and space-free: ``espk-enus-m3-a`` (engine, accent, variant, letter) or ``flt-slt-b``; no id
is a prefix of another, so utterance ids ``<spk>_<nnnn>`` sort consistently with speaker ids (Kaldi convention).
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import string
from dataclasses import dataclass
from typing import Any, Literal

from voxar.corpus.timbre import Timbre
from voxar.corpus.voices import ESPEAK_ACCENTS, VoiceSpec
from voxar.errors import VoxarConfigError

Gender = Literal["m", "f"]

# Nominal median F0 (Hz) of each base voice as rendered by espeak-ng 1.51 / flite 2.2 at default settings: used to
# turn a target F0 into a WORLD F0 scale. Measured once with timbre.median_f0 on an English sentence.
ESPEAK_BASE_F0: dict[str, tuple[float, Gender]] = {
    "m1": (92, "m"), "m2": (99, "m"), "m3": (102, "m"), "m4": (91, "m"), "m5": (101, "m"), "m6": (99, "m"),
    "m7": (105, "m"), "m8": (84, "m"), "klatt": (102, "m"), "klatt2": (103, "m"), "klatt3": (101, "m"),
    "klatt4": (100, "m"), "klatt6": (102, "m"), "adam": (102, "m"), "edward": (100, "m"), "john": (100, "m"),
    "max": (100, "m"), "quincy": (84, "m"), "robert": (94, "m"), "Andy": (95, "m"), "Denis": (98, "m"),
    "Lee": (95, "m"), "Mike": (89, "m"), "michel": (104, "m"), "norbert": (100, "m"), "travis": (101, "m"),
    "victor": (94, "m"), "david": (75, "m"), "rob": (103, "m"), "paul": (84, "m"), "iven": (98, "m"),
    "gustave": (104, "m"),
    "f1": (179, "f"), "f2": (192, "f"), "f3": (207, "f"), "f4": (177, "f"), "f5": (203, "f"), "steph": (183, "f"),
    "linda": (227, "f"), "belinda": (228, "f"), "Andrea": (242, "f"), "Alicia": (248, "f"), "anika": (264, "f"),
    "Annie": (232, "f"), "aunty": (172, "f"), "shelby": (176, "f"),
}  # fmt: skip
FLITE_BASE_F0: dict[str, tuple[float, Gender]] = {
    "kal": (87, "m"), "awb": (125, "m"), "rms": (100, "m"), "slt": (166, "f"),
}  # fmt: skip

TARGET_F0 = {"m": (85.0, 150.0), "f": (160.0, 250.0)}
# Formant warp by (base voice gender, target gender): small moves within a gender, large ones across. Mismatched
# extremes (a high F0 with a long vocal tract, or female formants pushed further up) hurt intelligibility: with
# PocketSphinx, slt at F0 x1.3 / alpha 1.12 went from 32 % to 83 % WER, while slt -> male (0.7 / 0.88) and
# awb -> female (1.6 / 1.15) stayed near the plain voices' WER.
VTL_ALPHA = {("m", "m"): (0.90, 1.04), ("f", "f"): (0.95, 1.06), ("m", "f"): (1.08, 1.18), ("f", "m"): (0.84, 0.93)}
F0_SCALE_LIMITS = (0.55, 2.2)
P_FLITE = 0.22
P_PLAIN = 0.15
P_BREATH = 0.2


@dataclass(frozen=True)
class SpeakerSpec:
    """One synthetic speaker: ``spk_id``, base ``voice`` (fixed prosody), fixed ``timbre``, nominal ``gender``."""

    spk_id: str
    voice: VoiceSpec
    timbre: Timbre
    gender: Gender

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for manifests and reports)."""
        return {
            "spk_id": self.spk_id,
            "gender": self.gender,
            "voice": dataclasses.asdict(self.voice),
            "timbre": dataclasses.asdict(self.timbre),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpeakerSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(d["spk_id"], VoiceSpec(**d["voice"]), Timbre(**d["timbre"]), d["gender"])


def _tag(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _base_id(voice: VoiceSpec) -> str:
    if voice.engine == "espeak":
        return f"espk-{ESPEAK_ACCENTS[voice.voice]}-{_tag(voice.variant)}"
    return f"flt-{voice.voice}"


def _letter(k: int) -> str:
    if k >= len(string.ascii_lowercase):
        raise VoxarConfigError(f"speaker plan: more than {len(string.ascii_lowercase)} speakers share one base voice")
    return string.ascii_lowercase[k]


class _Cycle:
    """Endless shuffled cycle over ``items`` (reshuffled with ``rng`` each round)."""

    def __init__(self, items: list, rng: random.Random) -> None:
        self.items, self.rng, self.queue = list(items), rng, []

    def next(self):
        if not self.queue:
            self.queue = list(self.items)
            self.rng.shuffle(self.queue)
        return self.queue.pop()


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _clip_scale(scale: float) -> float:
    lo, hi = F0_SCALE_LIMITS
    return min(max(scale, lo), hi)


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Timbre distance of two (f0 scale, vtl alpha) settings of one base voice: log-F0 and alpha, normalised."""
    return math.hypot(math.log(a[0] / b[0]) / 0.25, (a[1] - b[1]) / 0.06)


def _spread(
    first: tuple[float, float],
    earlier: list[tuple[float, float]],
    base_f0: float,
    base_gender: Gender,
    gender: Gender,
    rng: random.Random,
    n_candidates: int = 24,
) -> tuple[float, float]:
    """Of ``first`` and ``n_candidates`` fresh draws, the (f0 scale, alpha) farthest from the ``earlier`` speakers
    made from the same base voice (best-candidate sampling), so speakers sharing a variant stay apart.
    ``rng`` is separate from the plan's stream: speakers of variants used once keep their settings.
    """
    cands = [first]
    for _ in range(n_candidates):
        target = _log_uniform(rng, *TARGET_F0[gender])
        cands.append((_clip_scale(target / base_f0), rng.uniform(*VTL_ALPHA[(base_gender, gender)])))
    return max(cands, key=lambda c: min(_distance(c, e) for e in earlier))


def make_speaker_plan(
    n: int,
    seed: int = 0,
    *,
    transforms: bool = True,
    p_flite: float = P_FLITE,
    p_plain: float = P_PLAIN,
) -> list[SpeakerSpec]:
    """``n`` distinct speakers, deterministic given ``seed``. ``transforms=False`` gives plain engine voices only.

    Speakers alternate nominal gender (``m``, ``f``, ``m``, ...); ids are unique and none is a prefix of another.
    """
    if n < 1:
        raise VoxarConfigError(f"speaker plan: need at least one speaker, got {n}")
    rng = random.Random(f"voxar-speakers-{seed}")
    accents = _Cycle(sorted(ESPEAK_ACCENTS), rng)
    espeak_by_gender = {g: _Cycle(sorted(v for v, (_, vg) in ESPEAK_BASE_F0.items() if vg == g), rng) for g in "mf"}
    espeak_any = _Cycle(sorted(ESPEAK_BASE_F0), rng)
    flite_by_gender = {g: _Cycle(sorted(v for v, (_, vg) in FLITE_BASE_F0.items() if vg == g), rng) for g in "mf"}
    flite_any = _Cycle(sorted(FLITE_BASE_F0), rng)
    used: dict[str, int] = {}
    plain_used: set[str] = set()
    history: dict[str, list[tuple[float, float]]] = {}  # (f0 scale, alpha) of earlier speakers of each variant
    plan: list[SpeakerSpec] = []
    for i in range(n):
        gender: Gender = "m" if i % 2 == 0 else "f"
        plain = (not transforms) or rng.random() < p_plain
        use_flite = rng.random() < p_flite
        same_gender = plain or rng.random() < 0.7
        if use_flite:
            # Only four flite voices (one female): transformed flite speakers draw from all of them.
            name = flite_by_gender[gender].next() if plain else flite_any.next()
            base_f0, base_gender = FLITE_BASE_F0[name]
            voice = VoiceSpec("flite", name, "", speed=rng.uniform(0.88, 1.12), pitch=0.0, pitch_range=0.0)
        else:
            variant = espeak_by_gender[gender].next() if same_gender else espeak_any.next()
            base_f0, base_gender = ESPEAK_BASE_F0[variant]
            voice = VoiceSpec(
                "espeak",
                accents.next(),
                variant,
                speed=rng.uniform(0.85, 1.1),
                pitch=float(rng.randint(25, 75)) if plain else 50.0,
                pitch_range=float(rng.randint(60, 160)),
            )
        if plain and transforms and _base_id(voice) in plain_used:
            plain = False  # an untransformed base voice is one speaker only; its next use gets a transform
        family = f"{voice.engine}-{voice.variant or voice.voice}"
        if plain:
            plain_used.add(_base_id(voice))
            timbre = Timbre()
            gender = base_gender
        else:
            target = _log_uniform(rng, *TARGET_F0[gender])
            alpha = rng.uniform(*VTL_ALPHA[(base_gender, gender)])
            f0_range = round(rng.uniform(0.8, 1.3), 3)
            breath = round(rng.uniform(0.05, 0.2), 3) if rng.random() < P_BREATH else 0.0
            f0_scale = _clip_scale(target / base_f0)
            if history.get(family):
                f0_scale, alpha = _spread(
                    (f0_scale, alpha), history[family], base_f0, base_gender, gender, random.Random(f"{seed}:{i}")
                )
            timbre = Timbre(round(f0_scale, 3), round(alpha, 3), f0_range, breath)
        history.setdefault(family, []).append((timbre.f0_scale, timbre.vtl_alpha))
        voice = dataclasses.replace(voice, speed=round(voice.speed, 3))
        base = _base_id(voice)
        k = used.get(base, 0)
        used[base] = k + 1
        plan.append(SpeakerSpec(f"{base}-{_letter(k)}", voice, timbre, gender))
    check_plan(plan)
    return plan


def check_plan(plan: list[SpeakerSpec]) -> None:
    """Raise :class:`VoxarConfigError` if ids repeat, contain whitespace/underscores, or one prefixes another."""
    ids = [s.spk_id for s in plan]
    if len(set(ids)) != len(ids):
        raise VoxarConfigError("speaker plan: duplicate speaker ids")
    for spk in ids:
        if not re.fullmatch(r"[a-z0-9-]+", spk):
            raise VoxarConfigError(f"speaker plan: id {spk!r} must be lower-case letters, digits and dashes")
    ordered = sorted(ids)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b.startswith(a):
            raise VoxarConfigError(f"speaker plan: id {a!r} is a prefix of {b!r}")


def utterance_voice(spk: SpeakerSpec, utt_seed: int) -> VoiceSpec:
    """The voice settings for one utterance of ``spk``: its base voice with a slight, seeded rate/pitch variation.

    Speaking rate moves by at most +-3 %, espeak pitch by at most +-2 (of 0-99); flite pitch stays the voice's own.
    """
    rng = random.Random(f"voxar-utt-{utt_seed}")
    v = spk.voice
    speed = round(v.speed * rng.uniform(0.97, 1.03), 4)
    pitch = v.pitch + rng.randint(-2, 2) if v.engine == "espeak" else v.pitch
    return dataclasses.replace(v, speed=speed, pitch=float(pitch))


def utterance_id(spk_id: str, index: int) -> str:
    """Kaldi utterance id: the speaker id, an underscore and a 4-digit index (``espk-enus-m3-a_0007``)."""
    return f"{spk_id}_{index:04d}"
