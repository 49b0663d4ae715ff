"""Sensor wire protocol and device I/O (no DSP, no storage)."""

from firmware_interface.decoder import DecodedSamples as DecodedSamples
from firmware_interface.decoder import DecoderStats as DecoderStats
from firmware_interface.decoder import PacketDecoder as PacketDecoder
from firmware_interface.recording import RecordingReader as RecordingReader
from firmware_interface.recording import RecordingWriter as RecordingWriter
