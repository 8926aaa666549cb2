#!/bin/sh
# Installs meshnode as a systemd service next to a local mosquitto: the binary, the unit,
# the system user, the node's config and mosquitto's mesh.conf + ACL. Idempotent: run
# it again after an upgrade; an existing /etc/meshnode/meshnode.conf or mesh.acl is kept.
#
#   sudo deploy/install.sh [BINARY]          # BINARY defaults to target/release/meshnode
#   DESTDIR=/tmp/root deploy/install.sh BIN  # into a scratch root (no users, no systemctl)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../target/release/meshnode}
root=${DESTDIR:-}

[ -x "$bin" ] || { echo "install.sh: $bin is not an executable meshnode binary" >&2; exit 2; }

install -D -m 0755 "$bin" "$root/usr/local/bin/meshnode"
install -D -m 0644 "$here/meshnode.service" "$root/etc/systemd/system/meshnode.service"
install -D -m 0644 "$here/sysusers.d/meshnode.conf" "$root/usr/lib/sysusers.d/meshnode.conf"
install -D -m 0644 "$here/mosquitto/mesh.conf" "$root/etc/mosquitto/conf.d/mesh.conf"
install -D -m 0644 "$here/../README.md" "$root/usr/local/share/doc/meshnode/README.md"
# local edits (broker passwords, peers) are never overwritten
if [ ! -e "$root/etc/meshnode/meshnode.conf" ]; then
  install -D -m 0640 "$here/meshnode.conf" "$root/etc/meshnode/meshnode.conf"
fi
if [ ! -e "$root/etc/mosquitto/mesh.acl" ]; then
  install -D -m 0644 "$here/mosquitto/mesh.acl" "$root/etc/mosquitto/mesh.acl"
fi

if [ -z "$root" ]; then
  systemd-sysusers /usr/lib/sysusers.d/meshnode.conf
  # the config holds broker passwords: readable by root and meshnode only
  chgrp meshnode /etc/meshnode/meshnode.conf
  systemctl daemon-reload
  if [ ! -s /etc/mosquitto/pwfile ]; then
    echo "next: create the broker users, then restart mosquitto:"
    echo "  sudo mosquitto_passwd -c -b /etc/mosquitto/pwfile owner OWNERPW"
    echo "  sudo mosquitto_passwd -b /etc/mosquitto/pwfile guest GUESTPW"
    echo "  sudo systemctl restart mosquitto"
  fi
  echo "edit /etc/meshnode/meshnode.conf (peers, passwords), then:"
  echo "  sudo systemctl enable --now meshnode"
fi
