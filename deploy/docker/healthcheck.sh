#!/bin/bash
# The image's HEALTHCHECK: GET /healthz over bash's /dev/tcp, so a probe costs a
# shell (a few ms, a few MB), not a Node process. With TLS (TLS_CERT_FILE set)
# the port speaks only TLS, so the check is that it accepts connections.
set -u
host="${HOST:-127.0.0.1}"
case "$host" in 0.0.0.0 | "::" | "[::]" | "") host=127.0.0.1 ;; esac
port="${PORT:-8080}"
exec 3<>"/dev/tcp/${host}/${port}" || exit 1
if [ -n "${TLS_CERT_FILE:-}" ]; then exit 0; fi
printf 'GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
IFS= read -r -t 2 status <&3 || exit 1
case "$status" in
  "HTTP/1.1 200"*) exit 0 ;;
  *) exit 1 ;;
esac
