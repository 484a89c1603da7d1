"""grpcio (Debian's python3-grpcio) against a grpc.health.v1.Health server: runs
the scenarios the grpc-unary-path test asks for and prints one JSON object.

Usage: python3 grpcio-client.py PORT
Messages are framed by hand (HealthCheckRequest has one string field), so
nothing beyond grpcio is needed.
"""
import base64
import json
import sys

import grpc

CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"


def request(service: str) -> bytes:
    data = service.encode("utf-8")
    out = bytearray(b"\x0a")
    n = len(data)
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + data


def outcome(call):
    try:
        response = call()
        return {"ok": True, "status": response[1] if len(response) >= 2 else 0}
    except grpc.RpcError as error:
        trailers = {}
        for key, value in error.trailing_metadata() or ():
            trailers[key] = base64.b64encode(value).decode() if isinstance(value, bytes) else value
        return {"ok": False, "code": error.code().name, "details": error.details(), "trailers": trailers}


def main() -> None:
    port = sys.argv[1]
    results = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        check = channel.unary_unary(CHECK)
        watch = channel.unary_stream(WATCH)
        results["fail"] = outcome(lambda: check(request("fail"), timeout=10))
        results["watch_fail"] = outcome(lambda: b"".join(watch(request("fail"), timeout=10)))
        response, call = check.with_call(request("echo"), metadata=(("x-req", "from-grpcio"),), timeout=10)
        results["echo"] = {
            "status": response[1] if len(response) >= 2 else 0,
            "initial": dict(call.initial_metadata()),
            "trailing": dict(call.trailing_metadata()),
        }
        results["gzip"] = outcome(lambda: check(request("echo" + "x" * 2000), compression=grpc.Compression.Gzip, timeout=10))
        results["deadline"] = outcome(lambda: check(request("slow"), timeout=0.3))
        results["too_big"] = outcome(lambda: check(request("y" * 4000), timeout=10))
    print(json.dumps(results))


main()
