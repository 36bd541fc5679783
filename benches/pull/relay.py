#!/usr/bin/env python3
"""A TCP delay line for scripts/bench-pull.sh (this kernel has no netem, so latency is added
in user space while `tc` limits the rate).

    relay.py relay LISTEN_HOST:PORT TARGET_HOST:PORT --delay-ms 10
    relay.py testsrv LISTEN_HOST:PORT          # echo / sink server for the link check
    relay.py probe TARGET_HOST:PORT --bytes 5000000 --pings 10

relay: every accepted connection is forwarded to TARGET. Each direction is a delay line, not
stop-and-wait: a chunk read at time t is written at t + delay while later chunks keep being
read, so throughput is preserved and each direction adds DELAY one way (a connection through
one relay sees 2 x DELAY of round trip). Backpressure: at most --window bytes wait in a line,
so a slow link (tc) still pushes back on the sender. The TCP handshake the relay cannot delay
(the kernel completes it) is charged to the first bytes instead: the target sees the client's
first data no earlier than 3 x DELAY after the accept, as over a real link (SYN, SYN-ACK, data).
Sockets use TCP_NODELAY. Prints "relay ready LISTEN -> TARGET" on stderr once listening.

testsrv: per connection, reads a 9-byte header (op, u64 big-endian length): op E echoes the
length bytes back; op S swallows them and answers one byte. probe: median echo round trip of
--pings one-byte echoes, then the time to push --bytes through a sink (ended by its one-byte
answer), printed as JSON {"rtt_ms":..., "bytes":..., "seconds":..., "mbit_s":...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import struct
import sys
import time

CHUNK = 64 * 1024


def fmt_time(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def split_addr(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host, int(port)


def nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class Budget:
    """Bytes allowed to wait in one delay line."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.cond = asyncio.Condition()

    async def take(self, n: int) -> None:
        async with self.cond:
            # a chunk larger than the whole budget still passes when the line is empty
            await self.cond.wait_for(lambda: self.used == 0 or self.used + n <= self.limit)
            self.used += n

    async def give(self, n: int) -> None:
        async with self.cond:
            self.used -= n
            self.cond.notify_all()


async def delay_line(
    src: asyncio.StreamReader,
    dst: asyncio.StreamWriter,
    delay: float,
    window: int,
    not_before: float,
) -> None:
    """Copy src to dst, each chunk written `delay` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    budget = Budget(window)

    async def reader() -> None:
        try:
            while True:
                data = await src.read(CHUNK)
                if not data:
                    break
                await budget.take(len(data))
                queue.put_nowait((max(loop.time(), not_before) + delay, data))
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait(None)

    async def writer() -> None:
        while True:
            item = await queue.get()
            if item is None:
                break
            due, data = item
            wait = due - loop.time()
            if wait > 0.0005:
                # the loop wakes on whole milliseconds, late by half of one on average
                await asyncio.sleep(wait - 0.0005)
            dst.write(data)
            await dst.drain()
            await budget.give(len(data))
        if dst.can_write_eof():
            try:
                dst.write_eof()  # pass the half-close on, after the data before it
                await dst.drain()
            except (ConnectionError, OSError, RuntimeError):
                pass

    r = asyncio.ensure_future(reader())
    try:
        await writer()
    finally:
        r.cancel()


async def relay_main(listen: str, target: str, delay: float, window: int) -> None:
    thost, tport = split_addr(target)

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        peer = cw.get_extra_info("peername")
        t_accept = time.time()
        nodelay(cw)
        try:
            tr, tw = await asyncio.open_connection(thost, tport)
        except OSError as e:
            print(f"relay: connect {target}: {e}", file=sys.stderr)
            cw.close()
            return
        nodelay(tw)
        # client -> target: first data no earlier than accept + 2 x delay (+ delay in line)
        up = asyncio.ensure_future(delay_line(cr, tw, delay, window, accepted + 2 * delay))
        down = asyncio.ensure_future(delay_line(tr, cw, delay, window, 0.0))
        try:
            done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if t.exception() is not None:
                    raise t.exception()
        except (ConnectionError, OSError):
            pass
        finally:
            for t in (up, down):
                t.cancel()
            for w in (cw, tw):
                w.close()
            # one line per connection, for reading the gateway's association pattern
            print(f"conn {fmt_time(t_accept)} .. {fmt_time(time.time())} "
                  f"from {peer[0]}:{peer[1]} to {target}", file=sys.stderr, flush=True)

    host, port = split_addr(listen)
    server = await asyncio.start_server(handle, host, port, reuse_address=True, backlog=128)
    print(f"relay ready {listen} -> {target} delay={delay * 1000:.1f}ms", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


async def testsrv_main(listen: str) -> None:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nodelay(w)
        try:
            while True:
                head = await r.readexactly(9)
                op, n = head[:1], struct.unpack(">Q", head[1:])[0]
                if op == b"E":
                    w.write(await r.readexactly(n))
                else:
                    left = n
                    while left:
                        left -= len(await r.read(min(left, CHUNK)))
                    w.write(b"K")
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            w.close()

    host, port = split_addr(listen)
    server = await asyncio.start_server(handle, host, port, reuse_address=True)
    print(f"testsrv ready {listen}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


def probe_main(target: str, nbytes: int, pings: int) -> None:
    s = socket.create_connection(split_addr(target), timeout=120)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def recv_exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            part = s.recv(n - len(buf))
            if not part:
                raise ConnectionError("closed")
            buf += part
        return buf

    rtts = []
    for _ in range(pings):
        t0 = time.perf_counter()
        s.sendall(b"E" + struct.pack(">Q", 1) + b"x")
        recv_exact(1)
        rtts.append(time.perf_counter() - t0)
    rtt = statistics.median(rtts)
    payload = bytes(CHUNK)
    t0 = time.perf_counter()
    s.sendall(b"S" + struct.pack(">Q", nbytes))
    left = nbytes
    while left:
        n = min(left, CHUNK)
        s.sendall(payload[:n])
        left -= n
    recv_exact(1)
    secs = time.perf_counter() - t0
    s.close()
    # the answer byte costs one round trip more than the bytes themselves
    mbit = nbytes * 8 / max(secs - rtt, 1e-9) / 1e6
    print(json.dumps({"rtt_ms": rtt * 1000, "bytes": nbytes, "seconds": secs, "mbit_s": mbit}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("relay")
    r.add_argument("listen")
    r.add_argument("target")
    r.add_argument("--delay-ms", type=float, default=10.0)
    r.add_argument("--window", type=int, default=1024 * 1024)
    t = sub.add_parser("testsrv")
    t.add_argument("listen")
    p = sub.add_parser("probe")
    p.add_argument("target")
    p.add_argument("--bytes", type=int, default=5_000_000)
    p.add_argument("--pings", type=int, default=10)
    args = ap.parse_args()
    try:
        if args.mode == "relay":
            asyncio.run(relay_main(args.listen, args.target, args.delay_ms / 1000, args.window))
        elif args.mode == "testsrv":
            asyncio.run(testsrv_main(args.listen))
        else:
            probe_main(args.target, args.bytes, args.pings)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
