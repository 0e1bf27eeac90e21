#!/bin/sh
# Runs inside the image tree during the build.
set -eu
# avahi announces only on the cluster's VLAN: clusterlab-node starts it once it is limited to it
systemctl disable avahi-daemon.service avahi-daemon.socket
systemctl enable clusterlab-network.service clusterlab-node.service clusterlab-register.service
