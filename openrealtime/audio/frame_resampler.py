"""Resampling a stream of decoded frames with libswresample, without threads.

`av.AudioResampler` builds an FFmpeg filter graph with FFmpeg's default thread count, one thread per
core, and those threads live as long as the resampler: a server with one resampler per session had
2 threads per call on 2 cores (16 on a 16-core host), and since a finished call's objects are freed by
Python's cyclic garbage collector, not at once, their threads piled up between collections (the soak
bench, bench/soak.py, counted 117 threads with no call up). Resampling 20 ms of audio needs no threads:
`FrameResampler` is the same graph (abuffer → aformat → abuffersink: libswresample converts, with its
state kept between frames) with `nb_threads = 1`, which starts none.
"""

from __future__ import annotations

import errno

import av
from av.filter import Graph


class FrameResampler:
    """`av.AudioResampler(format, layout, rate).resample(frame)` without threads. Every frame pushed must
    have the first frame's format, layout and rate."""

    def __init__(self, format: str, layout: str, rate: int) -> None:
        self.format, self.layout, self.rate = format, layout, rate
        self._graph: Graph | None = None

    def _build(self, frame: av.AudioFrame) -> Graph:
        graph = Graph()
        graph.threads = 1  # before any filter is added: no worker threads
        source = graph.add("abuffer", sample_rate=str(frame.sample_rate), sample_fmt=frame.format.name,
                           channel_layout=frame.layout.name,
                           **({"time_base": str(frame.time_base)} if frame.time_base is not None else {}))
        convert = graph.add("aformat", sample_rates=str(self.rate), sample_fmts=self.format,
                            channel_layouts=self.layout)
        sink = graph.add("abuffersink")
        source.link_to(convert)
        convert.link_to(sink)
        graph.configure()
        return graph

    def resample(self, frame: av.AudioFrame) -> list[av.AudioFrame]:
        if self._graph is None:
            self._graph = self._build(frame)
        self._graph.push(frame)
        out: list[av.AudioFrame] = []
        while True:
            try:
                out.append(self._graph.pull())
            except EOFError:
                break
            except av.FFmpegError as exc:
                if exc.errno != errno.EAGAIN:
                    raise
                break
        return out
