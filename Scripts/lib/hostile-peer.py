#!/usr/bin/env python3
"""A hostile ZeroMQ peer for the fault scripts: tries to talk to a coordinator without the right to.

    hostile-peer.py plain ENDPOINT [SECONDS]
        A DEALER without CURVE (no keys at all) sends a few frames and waits SECONDS (default 3) for any reply.
        Prints "answered N" or "no answer"; exit 0 when nothing came back (the handshake was refused).
    hostile-peer.py garbage ENDPOINT SERVER_PUB_FILE SECRET_KEY_FILE COUNT [SECONDS]
        A CURVE DEALER with the given secret key sends COUNT undecodable frames and counts the replies that come
        back within SECONDS (default 3). Prints "sent COUNT, answered N"; exit 0.

Needs pyzmq (`pip install pyzmq`).
"""
import sys
import time

try:
    import zmq
except ImportError:
    print("hostile-peer: needs pyzmq (pip install pyzmq)", file=sys.stderr)
    sys.exit(2)

# An unknown message kind, a line break and a terminal escape: no decoder accepts it, no log may print it raw.
GARBAGE = bytes([0xFF, 0xFE, 0x00, 0x0A, 0x1B]) + b"[31mnot a frame"


def read_key(path):
    with open(path) as f:
        return f.read().split()[0].encode()


def count_replies(socket, seconds):
    answered = 0
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return answered
        if socket.poll(int(left * 1000)):
            socket.recv_multipart()
            answered += 1


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(2 if not args else 0)
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.IDENTITY, b"hostile\n\x1b[31m")
    if args[0] == "plain" and len(args) in (2, 3):
        seconds = float(args[2]) if len(args) == 3 else 3
        socket.connect(args[1])
        for _ in range(3):
            try:
                socket.send(GARBAGE, zmq.NOBLOCK)
            except zmq.Again:
                pass
        answered = count_replies(socket, seconds)
        print(f"answered {answered}" if answered else "no answer")
        sys.exit(1 if answered else 0)
    if args[0] == "garbage" and len(args) in (5, 6):
        endpoint, server_pub, secret, count = args[1], read_key(args[2]), read_key(args[3]), int(args[4])
        seconds = float(args[5]) if len(args) == 6 else 3
        socket.setsockopt(zmq.CURVE_SERVERKEY, server_pub)
        socket.setsockopt(zmq.CURVE_SECRETKEY, secret)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, zmq.curve_public(secret))
        socket.setsockopt(zmq.SNDHWM, count + 10)
        socket.connect(endpoint)
        sent = 0
        deadline = time.monotonic() + seconds
        while sent < count and time.monotonic() < deadline:
            try:
                socket.send(GARBAGE, zmq.NOBLOCK)
                sent += 1
            except zmq.Again:
                time.sleep(0.01)
        answered = count_replies(socket, seconds)
        print(f"sent {sent}, answered {answered}")
        sys.exit(0)
    print(__doc__.strip(), file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
