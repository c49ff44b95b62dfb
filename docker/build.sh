#!/bin/sh
# docker build with an optional extra CA bundle for pip (CA_BUNDLE=FILE), staged in docker/ca/
# for this build only and deleted when it ends, whatever happens.
# Usage: [CA_BUNDLE=FILE] docker/build.sh DOCKER-BUILD-ARGS...      (run from the project root)
set -eu
staged=docker/ca/extra-ca.crt
if [ -n "${CA_BUNDLE:-}" ]; then
    trap 'rm -f "$staged"' EXIT
    trap 'exit 130' INT TERM
    cp "$CA_BUNDLE" "$staged"
fi
DOCKER_BUILDKIT=0 docker build --force-rm "$@" .
