#!/bin/sh
# Makes a Debian bookworm base image from Debian's own archive, for machines that cannot pull
# from a container registry (CI here reaches only the package registries).
# Usage: docker/local-base.sh [TAG]      needs root, debootstrap and a running Docker daemon.
set -eu
tag=${1:-local/debian:bookworm}
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import - "$tag"
