"""MPEG-TS program information (PAT/SDT) that PyAV does not expose, read from the file's first packets.

Broadcast and camera workflows address a transport stream by its program number,
PMT PID, transport stream id and DVB service name/provider. FFmpeg's demuxer reads
them, but PyAV has no access to its programs, so this module parses the two small
tables that hold them (ISO/IEC 13818-1 PAT; ETSI EN 300 468 SDT) from the start of
the file and hands them to FFmpeg's MPEG-TS muxer as options. Only sections that fit
in one packet are read (always so for single-service files); a file with several
programs keeps its PIDs but not its program layout, and is told so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SYNC = 0x47
PAT_PID, SDT_PID = 0x0000, 0x0011
READ_LIMIT = 4 * 1024 * 1024  # the PAT repeats every 0.1 s and the SDT every 2 s: enough for both


@dataclass
class TransportStreamInfo:
    transport_stream_id: int | None = None
    programs: dict[int, int] = field(default_factory=dict)  # program number -> PMT PID
    original_network_id: int | None = None
    services: dict[int, tuple[str, str]] = field(default_factory=dict)  # service id -> (provider, name)


def _packet_size(data: bytes) -> tuple[int, int] | None:
    """(packet size, offset of the sync byte): 188-byte TS, or 192-byte M2TS with a 4-byte time code."""
    for size, offset in ((188, 0), (192, 4), (204, 0)):
        if len(data) > offset + 2 * size and all(data[offset + k * size] == SYNC for k in range(3)):
            return size, offset
    return None


def _dvb_text(raw: bytes) -> str:
    if raw and raw[0] < 0x20:  # a character table selector; the rest is read as Latin-1
        raw = raw[1:]
    return raw.decode("latin-1", errors="replace").strip()


def _section(payload: bytes) -> tuple[int, bytes] | None:
    pointer = payload[0]
    section = payload[1 + pointer:]
    if len(section) < 3:
        return None
    length = ((section[1] & 0x0F) << 8) | section[2]
    body = section[3:3 + length]
    return (section[0], body) if len(body) == length and length >= 9 else None


def _parse_pat(body: bytes, info: TransportStreamInfo) -> None:
    info.transport_stream_id = int.from_bytes(body[0:2], "big")
    for index in range(5, len(body) - 4, 4):
        number = int.from_bytes(body[index:index + 2], "big")
        pid = int.from_bytes(body[index + 2:index + 4], "big") & 0x1FFF
        if number:  # program 0 points at the network information table
            info.programs[number] = pid


def _parse_sdt(body: bytes, info: TransportStreamInfo) -> None:
    info.original_network_id = int.from_bytes(body[5:7], "big")
    index, end = 8, len(body) - 4
    while index + 5 <= end:
        service_id = int.from_bytes(body[index:index + 2], "big")
        loop = ((body[index + 3] & 0x0F) << 8) | body[index + 4]
        descriptors = body[index + 5:index + 5 + loop]
        index += 5 + loop
        at = 0
        while at + 2 <= len(descriptors):
            tag, size = descriptors[at], descriptors[at + 1]
            content = descriptors[at + 2:at + 2 + size]
            at += 2 + size
            if tag == 0x48 and len(content) >= 2:  # service descriptor
                provider_end = 2 + content[1]
                provider = content[2:provider_end]
                name = content[provider_end + 1:provider_end + 1 + content[provider_end]] \
                    if provider_end < len(content) else b""
                info.services[service_id] = (_dvb_text(provider), _dvb_text(name))


def read_transport_stream_info(path: str | Path) -> TransportStreamInfo | None:
    """PAT and SDT of the TS file at ``path``; None when it is not a readable transport stream."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(READ_LIMIT)
    except OSError:
        return None
    layout = _packet_size(data)
    if layout is None:
        return None
    size, offset = layout
    info = TransportStreamInfo()
    seen_pat = seen_sdt = False
    for start in range(offset, len(data) - 187, size):
        packet = data[start:start + 188]
        if packet[0] != SYNC or not packet[1] & 0x40:  # only packets that start a section
            continue
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        if pid not in (PAT_PID, SDT_PID) or (pid == PAT_PID and seen_pat) or (pid == SDT_PID and seen_sdt):
            continue
        control = (packet[3] >> 4) & 0x3
        if not control & 0x1:
            continue
        payload = packet[4 + (1 + packet[4] if control & 0x2 else 0):]
        parsed = _section(payload) if payload else None
        if parsed is None:
            continue
        table, body = parsed
        if pid == PAT_PID and table == 0x00:
            _parse_pat(body, info)
            seen_pat = True
        elif pid == SDT_PID and table == 0x42:
            _parse_sdt(body, info)
            seen_sdt = True
        if seen_pat and seen_sdt:
            break
    return info if seen_pat else None


def muxer_settings(info: TransportStreamInfo, source: str) -> tuple[dict[str, str], dict[str, str]]:
    """FFmpeg MPEG-TS muxer options and container metadata that give the output the input's program."""
    if len(info.programs) != 1:
        if len(info.programs) > 1:
            log.warning("%s: the transport stream has %d programs; the output has one (PIDs are kept, the "
                        "program numbers and service names are not)", source, len(info.programs))
        return {}, {}
    (number, pmt_pid), = info.programs.items()
    options = {"mpegts_service_id": str(number), "mpegts_pmt_start_pid": str(pmt_pid)}
    if info.transport_stream_id is not None:
        options["mpegts_transport_stream_id"] = str(info.transport_stream_id)
    if info.original_network_id is not None:
        options["mpegts_original_network_id"] = str(info.original_network_id)
    metadata: dict[str, str] = {}
    if number in info.services:
        provider, name = info.services[number]
        metadata.update({key: value for key, value in (("service_provider", provider), ("service_name", name))
                         if value})
    return options, metadata
