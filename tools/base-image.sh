#!/usr/bin/env bash
# A stand-in for the Dockerfile's base image (python:3.11-slim-bookworm), built from Debian's
# packages where no registry serves images: debootstrap a minimal bookworm with Python 3.11
# and venv, import it under the base image's tag, and carry the host's CA bundle and package
# sources so that apt-get, pip and npm inside `docker build --network host` trust and reach
# what the host does.
#
#   tools/base-image.sh [TAG]     (default: the Dockerfile's FROM; does nothing if it exists)
#
# MIRROR (default: the host's first Debian source, else http://deb.debian.org/debian) and
# WORK (default: a temporary directory) are variables.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG=${1:-$(awk '/^FROM /{print $2; exit}' "$ROOT/Dockerfile")}
fail() { echo "base-image: error: $*" >&2; exit 1; }

command -v docker >/dev/null || fail "docker is missing; run: apt-get install docker.io"
docker info >/dev/null 2>&1 || fail "no Docker engine answers; start it (dockerd &) and run again"
if docker image inspect "$TAG" >/dev/null 2>&1; then
	echo "base-image: $TAG is already present"
	exit 0
fi
command -v debootstrap >/dev/null || fail "debootstrap is missing; run: apt-get install debootstrap"
[ "$(id -u)" = 0 ] || fail "debootstrap needs root; run as root"

host_mirror() {
	local sources=/etc/apt/sources.list.d/debian.sources
	[ -f "$sources" ] && awk '/^URIs:/{print $2; exit}' "$sources" && return
	[ -f /etc/apt/sources.list ] && awk '/^deb /{print $2; exit}' /etc/apt/sources.list
}
MIRROR=${MIRROR:-$(host_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WORK=${WORK:-$(mktemp -d /var/tmp/wardrobe-base.XXXXXX)}
trap 'rm -rf "$WORK"' EXIT
root="$WORK/root"

echo "base-image: debootstrap bookworm from $MIRROR"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" \
	"$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
	|| fail "debootstrap failed: $(grep -m1 '^E:' "$WORK/debootstrap.log" || tail -1 "$WORK/debootstrap.log")"
# The host's package sources and trust: the bundle goes where no package's trigger rewrites it.
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
	cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/"
	rm -f "$root/etc/apt/sources.list"
fi
cp /etc/apt/apt.conf.d/99* "$root/etc/apt/apt.conf.d/" 2>/dev/null || true
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/host-ca.crt"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# python:3.11 has `python`; the Makefile's default is python3, which both have.
ln -s python3 "$root/usr/bin/python"

ca=/etc/ssl/host-ca.crt
tar -C "$root" -c . | docker import \
	--change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
	--change "ENV LANG=C.UTF-8" \
	--change "ENV SSL_CERT_FILE=$ca PIP_CERT=$ca REQUESTS_CA_BUNDLE=$ca NODE_EXTRA_CA_CERTS=$ca" \
	--change 'CMD ["python3"]' - "$TAG" >/dev/null
echo "base-image: imported $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
