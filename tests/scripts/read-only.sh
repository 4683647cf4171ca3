#!/bin/bash
set -u
root="$1"; bin="$2"; out="$3"
mount --bind "$root/etc/rancher/k3s" "$root/etc/rancher/k3s" || exit 90
mount -o remount,bind,ro "$root/etc/rancher/k3s" || exit 90
snap() { (cd "$root" && find . -printf '%y %m %U:%G %p -> %l\n' | sort && find . -type f -exec md5sum {} + | sort); }
snap > "$out/before.txt"
PATH="$STANDIN_PATH" "$bin" install --yes --cilium-version 1.18.4 --root "$root" > "$out/install.txt" 2>&1; echo "install exit $?" >> "$out/install.txt"
snap > "$out/after.txt"
