"""Exceptions voxar raises for bad user input. The CLI prints them as one line, never a traceback."""


class VoxarError(Exception):
    """Base class of every error caused by user input (files, text, configs, devices)."""


class VoxarAudioError(VoxarError):
    """An audio file or buffer that cannot be used; the message names the file and the problem."""


class VoxarTextError(VoxarError):
    """Text input that cannot be used (empty, unsupported, missing phonemiser)."""


class VoxarDataError(VoxarError):
    """A data directory, manifest or dump that is missing or inconsistent."""


class VoxarConfigError(VoxarError):
    """A config file with unknown keys, wrong types, or a model directory that does not match."""
