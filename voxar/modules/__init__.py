"""Reusable building blocks: the streaming API and streamable convolutions."""

from voxar.modules.conv import ConvState, SameConv1d, StreamingConv1d
from voxar.modules.streaming import Stream, StreamingModule, chunk_schedule, clone_state, run_chunked, streaming

__all__ = [
    "ConvState",
    "SameConv1d",
    "Stream",
    "StreamingConv1d",
    "StreamingModule",
    "chunk_schedule",
    "clone_state",
    "run_chunked",
    "streaming",
]
