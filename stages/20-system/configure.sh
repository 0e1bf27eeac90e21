#!/bin/sh
# Runs inside the image tree during the build.
set -eu
locale-gen
ln -sf "/usr/share/zoneinfo/$(cat /etc/timezone)" /etc/localtime
systemctl enable systemd-networkd.service systemd-resolved.service systemd-timesyncd.service ssh.service
