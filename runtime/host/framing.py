"""The `ipc` modes: how messages travel over a service's stdin and stdout.

- `lines`: UTF-8 text, one message per newline-terminated line.
- `frames`: each message is a little-endian u32 length followed by that many bytes.
- `stream`: no framing; each chunk read from stdout is one message.
"""

from __future__ import annotations

import struct
from typing import Literal

Ipc = Literal["lines", "frames", "stream"]

_U32 = struct.Struct("<I")
MAX_FRAME = 1 << 30


class FramingError(ValueError):
    """A message that the service's `ipc` mode cannot carry."""


class MessageTooLong(FramingError):
    """The service's output holds a message longer than its `limits.message`."""


def encode(ipc: Ipc, message: bytes | memoryview | str) -> bytes:
    """The bytes to write to stdin to deliver `message` to a service in mode `ipc`."""
    if ipc == "lines":
        if not isinstance(message, str):
            raise FramingError("ipc = \"lines\" carries text messages (str), got bytes")
        if "\n" in message:
            raise FramingError("ipc = \"lines\" messages cannot contain a newline")
        return message.encode() + b"\n"
    if isinstance(message, str):
        raise FramingError(f"ipc = \"{ipc}\" carries binary messages (bytes), got str")
    if ipc == "frames":
        if len(message) > MAX_FRAME:
            raise FramingError(f"frame of {len(message)} bytes exceeds the 1 GiB limit")
        return _U32.pack(len(message)) + message
    return bytes(message)


class Decoder:
    """Turns the chunks read from a service's stdout into messages.

    At most `max_message` bytes of one message are buffered: a longer line, or a frame header
    announcing more, raises MessageTooLong (a stream has no messages to bound: each chunk is one).
    """

    def __init__(self, ipc: Ipc, max_message: int = MAX_FRAME) -> None:
        self.ipc = ipc
        self.max_message = max_message
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[bytes | str]:
        """Consume `chunk`; return every message it completes, in order."""
        if self.ipc == "stream":
            return [chunk] if chunk else []
        if self.ipc == "frames":
            return self._frames(chunk)
        start = len(self._buf)
        self._buf += chunk
        end = self._buf.rfind(b"\n", start)
        if end < 0:
            self._check_line(len(self._buf))
            return []
        complete = bytes(self._buf[:end])
        del self._buf[: end + 1]
        lines = complete.split(b"\n")
        self._check_line(max(len(self._buf), *map(len, lines)))
        return [line.decode("utf-8", "replace") for line in lines]

    def _check_line(self, length: int) -> None:
        if length > self.max_message:
            raise MessageTooLong(
                f"wrote a line of more than {self.max_message} bytes (its limits.message) "
                "without a newline"
            )

    def _frames(self, chunk: bytes) -> list[bytes | str]:
        # Parse straight from the chunk when nothing is pending: one copy per message.
        data: bytes | bytearray = chunk
        if self._buf:
            self._buf += chunk
            data = self._buf
        out: list[bytes | str] = []
        view, pos, size = memoryview(data), 0, len(data)
        while size - pos >= 4:
            (length,) = _U32.unpack_from(view, pos)
            if length > self.max_message:
                view.release()
                raise MessageTooLong(
                    f"announced a frame of {length} bytes, over its limits.message of "
                    f"{self.max_message} bytes"
                )
            if size - pos - 4 < length:
                break
            out.append(bytes(view[pos + 4 : pos + 4 + length]))
            pos += 4 + length
        if data is self._buf:
            view.release()
            del self._buf[:pos]
        else:
            self._buf = bytearray(view[pos:])
            view.release()
        return out

    def finish(self) -> list[bytes | str]:
        """At end of output: an unterminated last line is still a message; a cut frame is not."""
        rest, self._buf = bytes(self._buf), bytearray()
        if self.ipc == "lines" and rest:
            return [rest.decode("utf-8", "replace")]
        return []
