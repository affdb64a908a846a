#!/bin/sh
# Ray Serve's HAProxy, with its stats and metrics listeners moved from all interfaces to 127.0.0.1.
#
# Ray writes `bind *:<stats port>` and `bind :<metrics port>` into every HAProxy config it generates (the
# addresses are fixed in its template; only the ports are settings). faceray's embedded local Ray points
# RAY_SERVE_HAPROXY_BINARY_PATH here, so each start and reload (`haproxy -db -f CONFIG ...`) first rewrites
# those two binds to loopback, then runs the real binary named by FACERAY_HAPROXY_BINARY. The HTTP frontend
# already binds the address Serve was given (127.0.0.1 by default) and is left alone.
config=""
previous=""
for argument in "$@"; do
    if [ "$previous" = "-f" ]; then config="$argument"; fi
    previous="$argument"
done
if [ -n "$config" ] && [ -f "$config" ]; then
    sed -i -E 's/^([[:space:]]*bind[[:space:]]+)\*?:([0-9]+)/\1127.0.0.1:\2/' "$config"
fi
exec "${FACERAY_HAPROXY_BINARY:?FACERAY_HAPROXY_BINARY must name the real haproxy binary}" "$@"
