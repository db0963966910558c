"""Network probes run inside a lab node (``ip netns exec <ns> python probe.py ...``); each prints one JSON line.

    connect HOST PORT COUNT         TCP connect times in ms
    echo ADDR PORT SECONDS          UDP echo server
    udp HOST PORT COUNT             send COUNT numbered datagrams 1 ms apart; how many came back
    source ADDR PORT SECONDS        TCP server that sends as fast as it can to whoever connects
    paced ADDR PORT SECONDS         TCP server that sends 8 Mbit/s (8 KiB every 8 ms) to whoever connects
    sink HOST PORT SECONDS          receive from a source; bytes per second after the first second
    listen ADDR PORT SECONDS        TCP server that accepts and closes (a peer to reach)
    reach HOST PORT TIMEOUT         whether a TCP connection opens within TIMEOUT seconds
"""

from __future__ import annotations

import json
import socket
import sys
import time


def connect(host: str, port: int, count: int) -> dict[str, object]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with socket.create_connection((host, port), timeout=10):
            times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)
    return {"ms": times}


def echo(addr: str, port: int, seconds: float) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, port))
    sock.settimeout(0.2)
    served, end = 0, time.time() + seconds
    while time.time() < end:
        try:
            data, peer = sock.recvfrom(2048)
        except TimeoutError:
            continue
        try:
            sock.sendto(data, peer)
        except PermissionError:  # the reply was dropped on the way out (iptables DROP tells the sender)
            continue
        served += 1
    return {"served": served}


def udp(host: str, port: int, count: int) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    back: set[int] = set()

    def collect() -> None:
        while True:
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                return
            back.add(int(data))

    for number in range(count):
        sock.sendto(str(number).encode(), (host, port))
        time.sleep(0.001)
        collect()
    end = time.time() + 1.0
    while time.time() < end:
        time.sleep(0.01)
        collect()
    return {"sent": count, "received": len(back)}


def source(addr: str, port: int, seconds: float) -> dict[str, object]:
    server = socket.create_server((addr, port))
    server.settimeout(seconds)
    conn, _ = server.accept()
    chunk, sent, end = b"x" * 65536, 0, time.time() + seconds
    try:
        while time.time() < end:
            sent += conn.send(chunk)
    except OSError:
        pass
    conn.close()
    return {"sent": sent}


def paced(addr: str, port: int, seconds: float) -> dict[str, object]:
    server = socket.create_server((addr, port))
    server.settimeout(seconds)
    conn, _ = server.accept()
    chunk, sent, start = b"x" * 8192, 0, time.time()
    try:
        while (now := time.time()) < start + seconds:
            sent += conn.send(chunk)
            time.sleep(max(0.0, start + sent / 1_048_576 - now))
    except OSError:
        pass
    conn.close()
    return {"sent": sent}


def sink(host: str, port: int, seconds: float) -> dict[str, object]:
    deadline = time.time() + 5
    while True:
        try:
            conn = socket.create_connection((host, port), timeout=5)
            break
        except ConnectionRefusedError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)
    started = time.time()
    counted, window_start = 0, started + 1.0
    while (now := time.time()) < started + seconds:
        data = conn.recv(65536)
        if not data:
            break
        if now >= window_start:
            counted += len(data)
    conn.close()
    return {"bits_per_second": counted * 8 / max(time.time() - window_start, 1e-9)}


def listen(addr: str, port: int, seconds: float) -> dict[str, object]:
    server = socket.create_server((addr, port))
    server.settimeout(0.2)
    accepted, end = 0, time.time() + seconds
    while time.time() < end:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        conn.close()
        accepted += 1
    return {"accepted": accepted}


def reach(host: str, port: int, timeout: float) -> dict[str, object]:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return {"reached": True}
    except OSError as error:
        return {"reached": False, "error": str(error)}


COMMANDS = {"connect": connect, "echo": echo, "udp": udp, "source": source, "paced": paced, "sink": sink,
            "listen": listen, "reach": reach}

if __name__ == "__main__":
    name, host, port, amount = sys.argv[1:5]
    timed = ("echo", "source", "paced", "sink", "listen", "reach")
    number = float(amount) if "." in amount or name in timed else int(amount)
    print(json.dumps(COMMANDS[name](host, int(port), number)))  # type: ignore[operator]
