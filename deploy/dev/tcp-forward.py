"""A TCP forwarder for the dev stack: every connection to LISTEN_ADDR:PORT is joined to
TARGET_ADDR:PORT, byte for byte, until either side closes.

Usage: python3 tcp-forward.py LISTEN_ADDR:PORT TARGET_ADDR:PORT

Invariant: it forwards only what it accepts on the one listening address and adds nothing; it
runs in the foreground until SIGTERM (s3-share-start.sh starts it with nohup and stops it by
its pidfile). Standard library only, so any python3 runs it.
"""

from __future__ import annotations

import asyncio
import signal
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def _handler(host: str, port: int):  # type: ignore[no-untyped-def]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return handle


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def main(listen: str, target: str) -> None:
    server = await asyncio.start_server(_handler(*_split(target)), *_split(listen))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"forwarding {listen} -> {target}", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: tcp-forward.py LISTEN_ADDR:PORT TARGET_ADDR:PORT")
    asyncio.run(main(sys.argv[1], sys.argv[2]))
