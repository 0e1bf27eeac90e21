#!/bin/sh
# Runs inside the image tree during the build.
set -eu
systemctl enable clusterlab-images.service
