"""Audio device discovery through sounddevice (the ``live`` extra), with one-line errors when it is unavailable."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from voxar.errors import VoxarError


class VoxarDeviceError(VoxarError):
    """PortAudio/sounddevice missing, or a device that does not exist."""


def import_sounddevice() -> Any:
    """Import sounddevice lazily; missing package or missing PortAudio library become :class:`VoxarDeviceError`."""
    try:
        import sounddevice
    except ImportError as e:
        raise VoxarDeviceError("sounddevice is not installed: pip install 'voxar[live]'") from e
    except OSError as e:  # raised at import when libportaudio is absent
        raise VoxarDeviceError(
            f"PortAudio library not found ({e}): install it with 'apt-get install libportaudio2'"
        ) from e
    return sounddevice


@dataclass
class AudioDevice:
    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    default_input: bool
    default_output: bool


def list_devices() -> list[AudioDevice]:
    """All PortAudio devices with their channel counts and default rate."""
    sd = import_sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in, default_out = sd.default.device
    except sd.PortAudioError as e:
        raise VoxarDeviceError(f"PortAudio could not list devices: {e}") from e
    out = []
    for i, d in enumerate(devices):
        out.append(
            AudioDevice(
                index=i,
                name=str(d["name"]),
                hostapi=str(hostapis[d["hostapi"]]["name"]),
                max_input_channels=int(d["max_input_channels"]),
                max_output_channels=int(d["max_output_channels"]),
                default_samplerate=float(d["default_samplerate"]),
                default_input=i == default_in,
                default_output=i == default_out,
            )
        )
    return out


def find_device(spec: str | int | None, kind: str) -> int | None:
    """Resolve a device given by index or by a case-insensitive name substring; ``kind`` is "input" or "output".

    ``None`` means the system default. An unknown or ambiguous name raises :class:`VoxarDeviceError`.
    """
    if spec is None or spec == "":
        return None
    devices = list_devices()
    channels = "max_input_channels" if kind == "input" else "max_output_channels"
    if isinstance(spec, int) or str(spec).isdigit():
        idx = int(spec)
        match = [d for d in devices if d.index == idx]
        if not match:
            raise VoxarDeviceError(f"no audio device with index {idx} (see 'voxar devices')")
        if getattr(match[0], channels) < 1:
            raise VoxarDeviceError(f"device {idx} ({match[0].name}) has no {kind} channels")
        return idx
    cands = [d for d in devices if str(spec).lower() in d.name.lower() and getattr(d, channels) > 0]
    exact = [d for d in cands if d.name.lower() == str(spec).lower()]
    if exact:
        return exact[0].index
    if not cands:
        raise VoxarDeviceError(f"no {kind} device matches {spec!r} (see 'voxar devices')")
    if len(cands) > 1:
        names = ", ".join(f"{d.index}: {d.name}" for d in cands)
        raise VoxarDeviceError(f"{kind} device {spec!r} is ambiguous ({names})")
    return cands[0].index


def devices_as_dicts() -> list[dict[str, Any]]:
    return [asdict(d) for d in list_devices()]
