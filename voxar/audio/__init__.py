"""Audio layer: file I/O, resampling, level normalisation and log-mel features (mono float32 ``(T,)``)."""

from voxar.audio.features import PRESETS, LogMelSpectrogram, MelConfig, log_mel
from voxar.audio.io import check_waveform, duration, load_audio, resample, save_audio
from voxar.audio.level import loudness_db, loudness_normalize, peak_normalize, rms_db

__all__ = [
    "PRESETS",
    "LogMelSpectrogram",
    "MelConfig",
    "check_waveform",
    "duration",
    "load_audio",
    "log_mel",
    "loudness_db",
    "loudness_normalize",
    "peak_normalize",
    "resample",
    "rms_db",
    "save_audio",
]
