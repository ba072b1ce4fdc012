#!/usr/bin/env python3
"""A TCP proxy that adds latency: for kernels without the netem qdisc.

    delay-proxy.py LISTEN_ADDRESS:PORT TARGET_ADDRESS:PORT CONTROL_FILE

Forwards every connection made to LISTEN to TARGET, both ways. Each chunk read is held until DELAY ms after it
arrived, then written, in order; DELAY is the whole number in CONTROL_FILE (0 when the file is missing or empty),
read again every 100 ms, so that a fault script turns latency on and off by writing the file. Prints "listening"
once bound. Exits on SIGTERM/SIGINT.
"""
import asyncio
import os
import signal
import sys
import time


def usage():
    print(__doc__.strip(), file=sys.stderr)
    sys.exit(2)


def address(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        usage()
    return host, int(port)


class Delay:
    def __init__(self, path):
        self.path = path
        self.ms = 0

    async def watch(self):
        while True:
            try:
                with open(self.path) as f:
                    text = f.read().strip()
                self.ms = int(text) if text else 0
            except (OSError, ValueError):
                self.ms = 0
            await asyncio.sleep(0.1)


async def pump(reader, writer, delay):
    """Reads chunks, queues them with their arrival time, and a writer task releases them DELAY ms later."""
    queue = asyncio.Queue()

    async def release():
        while True:
            item = await queue.get()
            if item is None:
                break
            arrived, data = item
            wait = arrived + delay.ms / 1000 - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    task = asyncio.ensure_future(release())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await queue.put((time.monotonic(), data))
        await queue.put(None)
        await task
    except (ConnectionError, OSError):
        pass
    finally:
        task.cancel()
        try:
            writer.close()
        except OSError:
            pass


async def main():
    if len(sys.argv) != 4 or sys.argv[1] in ("-h", "--help"):
        usage()
    listen, target, control = address(sys.argv[1]), address(sys.argv[2]), sys.argv[3]
    delay = Delay(control)
    asyncio.ensure_future(delay.watch())

    async def connection(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pump(client_reader, server_writer, delay), pump(server_reader, client_writer, delay))

    server = await asyncio.start_server(connection, *listen, reuse_address=True)
    print("listening", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
    os._exit(0)
